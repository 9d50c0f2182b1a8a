//! The ZenML dashboard's sign-in, served by the sidecar under `/authz/` on the dashboard's own
//! origin (a reverse proxy routes `/authz/` here and everything else to ZenML:
//! `deploy/nginx/zenml-dashboard.conf`). Only with `--dashboard-zenml-url`; else every path is
//! 404.
//!
//! * `GET /authz/login?redirect=<local path>`: the form (username or e-mail, API key).
//! * `POST /authz/login`: checks the key and its account (active, the username matches, a
//!   member or guest of the ZenML server's workspace), mints a one-minute user token, completes
//!   ZenML's external login with it server to server (`POST {zenml}/api/v1/login`, Bearer; no
//!   `Origin`, so ZenML's cookie is `SameSite=Lax` and no CSRF token is bound to it) and hands
//!   ZenML's `Set-Cookie` to the browser with a page that sets the dashboard's own signed-in flag
//!   (`localStorage.isAuthenticated`) and goes to `redirect`. The token never reaches the page.
//! * `GET /authz/logout`: ZenML's logout (deletes its cookie), the flag removed, back to the form.
//! * `GET /authz/dashboard-shim.js`: what the proxy adds to the dashboard (its password page →
//!   this one; the first-login survey and the user menu under EXTERNAL).
//!
//! A form posted from another site is refused (`Sec-Fetch-Site`, else `Origin` against `Host`);
//! `redirect` must be a local path (`/…`, not `//…`). Every refusal is a page with a message:
//! wrong credentials say only "invalid username or API key". Pages carry a strict CSP (scripts
//! only from `/authz/`, no inline script), `no-store`, `nosniff` and `no-referrer`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use sha2::{Digest, Sha256};

use super::pages::{CSS, JAVASCRIPT, asset, page};
use super::{ApiError, Call, read_body};
use crate::zenml::token::{self, Subject};
use crate::zenml_client::{Client, ClientError};

/// The sign-in paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigninRoute {
    Login,
    Logout,
    SignedInScript,
    SignedOutScript,
    DashboardShim,
    Style,
}

/// How long the token handed to ZenML's login lives: ZenML asks the user-info URL at once.
const LOGIN_TOKEN_SECS: u64 = 60;
/// How long a call to the ZenML server may take.
const ZENML_TIMEOUT: Duration = Duration::from_secs(10);
/// The one answer to wrong credentials, whatever the reason (the log says why, at debug).
const INVALID: &str = "Invalid username or API key.";

const LOGIN_PAGE: &str = include_str!("signin/login.html");
const SIGNED_IN_PAGE: &str = include_str!("signin/signed-in.html");
const SIGNED_OUT_PAGE: &str = include_str!("signin/signed-out.html");
const SIGNED_IN_JS: &str = include_str!("signin/signed-in.js");
const SIGNED_OUT_JS: &str = include_str!("signin/signed-out.js");
const DASHBOARD_SHIM_JS: &str = include_str!("signin/dashboard-shim.js");
const STYLE_CSS: &str = include_str!("signin/style.css");

/// Answers one sign-in path.
pub async fn route(
    call: &Call<'_>,
    request: Request<Incoming>,
    route: SigninRoute,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let state = call.state;
    let Some(zenml_url) = state.zenml().dashboard_zenml_url.clone() else {
        return Err(ApiError::NotFound(format!(
            "{} (dashboard sign-in is off: --dashboard-zenml-url)",
            request.uri().path()
        )));
    };
    match (route, request.method().clone()) {
        (SigninRoute::Login, Method::GET) => {
            let query = request.uri().query().unwrap_or_default();
            let redirect = local_redirect(query_value(query, "redirect").as_deref());
            let message = if query_value(query, "signed_out").is_some() {
                Message::Notice("You are signed out.".into())
            } else {
                Message::None
            };
            Ok(login_page(StatusCode::OK, &redirect, "", &message))
        }
        (SigninRoute::Login, _) => sign_in(call, request, zenml_url).await,
        (SigninRoute::Logout, _) => Ok(page(StatusCode::OK, SIGNED_OUT_PAGE.to_owned())),
        (SigninRoute::SignedInScript, _) => Ok(asset(SIGNED_IN_JS, JAVASCRIPT)),
        (SigninRoute::SignedOutScript, _) => Ok(asset(SIGNED_OUT_JS, JAVASCRIPT)),
        (SigninRoute::DashboardShim, _) => Ok(asset(DASHBOARD_SHIM_JS, JAVASCRIPT)),
        (SigninRoute::Style, _) => Ok(asset(STYLE_CSS, CSS)),
    }
}

/// What the form says above itself.
enum Message {
    None,
    Notice(String),
    Error(String),
}

async fn sign_in(
    call: &Call<'_>,
    request: Request<Incoming>,
    zenml_url: String,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let state = call.state;
    if let Some(reason) = cross_site(request.headers()) {
        tracing::info!(reason, "sign-in form from another site refused");
        return Ok(login_page(
            StatusCode::FORBIDDEN,
            "/",
            "",
            &Message::Error("This sign-in form was not sent from this site.".into()),
        ));
    }
    let body = read_body(request, state.limits()).await?;
    let form =
        std::str::from_utf8(&body).map_err(|_| ApiError::BadRequest("form body is not UTF-8".into()))?;
    let username = query_value(form, "username")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let api_key = query_value(form, "api_key").unwrap_or_default().trim().to_owned();
    let redirect = local_redirect(query_value(form, "redirect").as_deref());
    let refuse =
        |status: StatusCode, text: String| login_page(status, &redirect, &username, &Message::Error(text));

    let snapshot = state.snapshot();
    let (Some(directory), Some(view)) = (snapshot.directory(), snapshot.zenml.as_ref()) else {
        return Ok(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "No ZenML directory is loaded.".into(),
        ));
    };
    let key_sha256: [u8; 32] = Sha256::digest(api_key.as_bytes()).into();
    let account = directory
        .api_keys
        .get(&key_sha256)
        .filter(|(_, revoked)| !*revoked)
        .and_then(|(user_id, _)| directory.users.get(user_id))
        .filter(|user| user.active)
        .filter(|user| {
            user.named.name == username
                || user
                    .email
                    .as_deref()
                    .is_some_and(|email| email.eq_ignore_ascii_case(&username))
        });
    let Some(user) = account else {
        tracing::info!("dashboard sign-in refused: invalid username or API key");
        return Ok(refuse(StatusCode::UNAUTHORIZED, INVALID.into()));
    };
    let user_id = user.named.id.clone();

    // Which workspace the ZenML server is (its external server id), then ZenML's login with a
    // token for this account: blocking calls, off the async workers, on one client.
    let no_answer = |error: &dyn std::fmt::Display| {
        tracing::error!(%error, "dashboard sign-in: the ZenML server did not answer");
        refuse(
            StatusCode::BAD_GATEWAY,
            "The ZenML server did not answer; try again in a moment.".into(),
        )
    };
    let client = match Client::new(&zenml_url, ZENML_TIMEOUT) {
        Ok(client) => client,
        Err(error) => return Ok(no_answer(&error)),
    };
    let info = {
        let client = client.clone();
        tokio::task::spawn_blocking(move || client.info())
            .await
            .map_err(|error| ApiError::Internal(format!("sign-in: {error}")))?
    };
    let server = match info {
        Ok(server) => server,
        Err(error) => return Ok(no_answer(&error)),
    };
    let workspace_name = directory
        .workspaces
        .get(&server.id)
        .map_or_else(|| server.id.clone(), |w| w.named.name.clone());
    let shares = state.shares().snapshot();
    if let Err(refusal) = view
        .memberships()
        .admit(directory, &shares.set, &user_id, &server.id)
    {
        tracing::info!(principal.id = %user_id, workspace.id = %server.id, reason = %refusal, "dashboard sign-in refused");
        return Ok(refuse(
            StatusCode::FORBIDDEN,
            format!(
                "You have no access to the workspace `{workspace_name}`: {refusal}. Ask an administrator for a role there."
            ),
        ));
    }
    // Minted only for an admitted account, for the one login call.
    let token_key = &state.zenml().token_key;
    let token = token::issue(
        token_key,
        Subject::User(user_id.clone()),
        token_key.generation(&key_sha256),
        now() + LOGIN_TOKEN_SECS,
    );
    let login = tokio::task::spawn_blocking(move || client.external_login(&token))
        .await
        .map_err(|error| ApiError::Internal(format!("sign-in: {error}")))?;
    let cookies = match login {
        Ok(cookies) => cookies,
        Err(ClientError::Status { status, detail, .. }) if matches!(status, 401 | 403) => {
            tracing::warn!(principal.id = %user_id, status, %detail, "dashboard sign-in: ZenML refused the login");
            return Ok(refuse(
                StatusCode::FORBIDDEN,
                format!("The ZenML server refused the sign-in (HTTP {status}{detail})."),
            ));
        }
        Err(error) => {
            tracing::error!(principal.id = %user_id, %error, "dashboard sign-in: ZenML's login failed");
            return Ok(refuse(
                StatusCode::BAD_GATEWAY,
                "The ZenML server did not complete the sign-in; try again in a moment.".into(),
            ));
        }
    };
    tracing::info!(principal.id = %user_id, workspace.id = %server.id, "dashboard sign-in");
    let mut response = page(
        StatusCode::OK,
        SIGNED_IN_PAGE.replace("{{REDIRECT}}", &escape(&redirect)),
    );
    for cookie in cookies {
        if let Ok(value) = header::HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// Why a form post comes from another site, if it does: `Sec-Fetch-Site` other than
/// `same-origin` (a browser that sends it), else an `Origin` whose host is not `Host`.
fn cross_site(headers: &hyper::HeaderMap) -> Option<&'static str> {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return (site != "same-origin").then_some("Sec-Fetch-Site is not same-origin");
    }
    let origin = text("origin")?;
    let host = text("host");
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    (origin_host != host).then_some("Origin is not this host")
}

/// `redirect` when it is a local path (`/…`, not `//…` or `/\…`), else `/`.
fn local_redirect(redirect: Option<&str>) -> String {
    match redirect {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.chars().any(char::is_control) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// The first value of `key` in a query string or form body.
fn query_value(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn login_page(
    status: StatusCode,
    redirect: &str,
    username: &str,
    message: &Message,
) -> Response<Full<Bytes>> {
    let message = match message {
        Message::None => String::new(),
        Message::Notice(text) => format!("<p class=\"notice\" role=\"status\">{}</p>", escape(text)),
        Message::Error(text) => format!("<p class=\"error\" role=\"alert\">{}</p>", escape(text)),
    };
    let html = LOGIN_PAGE
        .replace("{{MESSAGE}}", &message)
        .replace("{{REDIRECT}}", &escape(redirect))
        .replace("{{USERNAME}}", &escape(username));
    page(status, html)
}

/// Text for HTML (element content and double-quoted attributes).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_redirect_targets() {
        let table = [
            (Some("/"), "/"),
            (Some("/projects?x=1"), "/projects?x=1"),
            (Some("//evil.example"), "/"),
            (Some("/\\evil.example"), "/"),
            (Some("https://evil.example/"), "/"),
            (Some("javascript:alert(1)"), "/"),
            (Some("/a\nb"), "/"),
            (Some(""), "/"),
            (None, "/"),
        ];
        for (given, expected) in table {
            assert_eq!(local_redirect(given), expected, "{given:?}");
        }
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
