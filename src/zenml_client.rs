//! A client of a ZenML server's own REST API (not the Pro API the sidecar serves), for
//! `zenml-authz zenml-projects`: the server's identity, an API-key login, and its projects.
//!
//! * `GET {url}/api/v1/info`: the server's id (its external server id, the workspace id, when
//!   the server was set up for the sidecar), name and version; no login needed.
//! * `POST {url}/api/v1/login`: form `password=<API key>` (0.98); a server that refuses it
//!   (401, 403, 422: 0.80 does) is asked again with `Authorization: Bearer <API key>` and no
//!   form (the external-token grant). Either answers `{"access_token": ...}`.
//! * `GET {url}/api/v1/projects?page=N&size=100`: one page,
//!   `{"index", "max_size", "total_pages", "total", "items": [{"id", "name", ...}]}`, with the
//!   access token as bearer; every page is read.
//!
//! Every request has the configured timeout (connecting, sending and reading together), no
//! redirect is followed (the API key is never sent on to another address), and each answer is
//! read up to [`MAX_ANSWER_BYTES`].

use std::time::Duration;

use serde::Deserialize;

/// The most bytes read from one answer.
pub const MAX_ANSWER_BYTES: u64 = 4 * 1024 * 1024;
/// Projects asked for per page.
pub const PAGE_SIZE: usize = 100;
/// The most pages read (a server announcing more is refused rather than read for ever).
pub const MAX_PAGES: usize = 1000;
/// The default timeout of one request, as ZenML's own `ZENML_SERVER_PRO_HTTP_TIMEOUT`.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;

/// Why the ZenML server gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Not an `http://` or `https://` URL.
    #[error("ZenML server URL `{0}`: give an http:// or https:// URL, e.g. `https://zenml.example.com`")]
    BadUrl(String),
    /// No connection, TLS failure, timeout.
    #[error("`{method} {url}`: {message}")]
    Transport {
        /// The request method.
        method: &'static str,
        /// The request URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The API key was refused on both login forms.
    #[error(
        "the ZenML server at `{url}` refused the API key (HTTP {status}{detail}): is it a valid ZENPROKEY_ key of a directory user, and is the server wired to this sidecar?"
    )]
    Login {
        /// The server URL.
        url: String,
        /// The last status.
        status: u16,
        /// `: <the server's detail>`, or empty.
        detail: String,
    },
    /// An answer other than 2xx.
    #[error("`{method} {url}`: HTTP {status}{detail}")]
    Status {
        /// The request method.
        method: &'static str,
        /// The request URL.
        url: String,
        /// The status.
        status: u16,
        /// `: <the server's detail>`, a redirect's target, or empty.
        detail: String,
    },
    /// A 2xx answer that is not what ZenML sends.
    #[error("`{method} {url}`: unexpected answer: {message}")]
    Answer {
        /// The request method.
        method: &'static str,
        /// The request URL.
        url: String,
        /// What is wrong with it.
        message: String,
    },
}

/// What a ZenML server says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServerInfo {
    /// The server's id: its external server id when it was first started with one (the
    /// workspace id a sidecar-backed server is set up with).
    pub id: String,
    /// The server's name.
    #[serde(default)]
    pub name: String,
    /// The ZenML version.
    #[serde(default)]
    pub version: String,
}

/// A project of a ZenML server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Project {
    /// The id ZenML generated.
    pub id: String,
    /// The name.
    pub name: String,
}

/// A connection to one ZenML server, logged in or not.
#[derive(Debug, Clone)]
pub struct Client {
    agent: ureq::Agent,
    /// The server URL without a trailing `/`.
    url: String,
    /// The server's access token once logged in.
    access_token: Option<String>,
}

#[derive(Deserialize)]
struct LoginAnswer {
    access_token: String,
}

#[derive(Deserialize)]
struct Page {
    items: Vec<Project>,
    total_pages: usize,
}

// === impl Client ===

impl Client {
    /// A client of the server at `url` (`http://` or `https://`, any path prefix kept); each
    /// request may take up to `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Client, ClientError> {
        let url = url.trim().trim_end_matches('/');
        let host = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        if host.is_none_or(str::is_empty) {
            return Err(ClientError::BadUrl(url.to_owned()));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("zenml-authz/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Client {
            agent,
            url: url.to_owned(),
            access_token: None,
        })
    }

    /// The server URL, without a trailing `/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the API key would cross the network unencrypted: `http://` to a host other than
    /// a loopback address or `localhost`.
    pub fn is_plain_http_remote(&self) -> bool {
        let Some(rest) = self.url.strip_prefix("http://") else {
            return false;
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let host = match authority.strip_prefix('[') {
            Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default(),
        };
        let loopback = host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        !(loopback || host.eq_ignore_ascii_case("localhost"))
    }

    /// `GET /api/v1/info`.
    pub fn info(&self) -> Result<ServerInfo, ClientError> {
        let url = format!("{}/api/v1/info", self.url);
        let response = self.agent.get(&url).call();
        read_json("GET", &url, response)
    }

    /// `POST /api/v1/login` with `Authorization: Bearer <token>` and no `Origin` (ZenML's
    /// external grant, a same-site login: its cookie is `SameSite=Lax` and no CSRF token is
    /// bound to it): the `Set-Cookie` values of ZenML's answer, to hand to the browser.
    pub fn external_login(&self, token: &str) -> Result<Vec<String>, ClientError> {
        let url = format!("{}/api/v1/login", self.url);
        let response = self
            .agent
            .post(&url)
            .header("Authorization", format!("Bearer {token}"))
            .send_form([("grant_type", "zenml-external")]);
        let cookies = response.as_ref().map_or_else(
            |_| Vec::new(),
            |response| {
                response
                    .headers()
                    .get_all("set-cookie")
                    .iter()
                    .filter_map(|value| value.to_str().ok().map(str::to_owned))
                    .collect()
            },
        );
        let answer: LoginAnswer = read_json("POST", &url, response)?;
        if answer.access_token.is_empty() || cookies.is_empty() {
            return Err(ClientError::Answer {
                method: "POST",
                url,
                message: "no session cookie in the login answer".into(),
            });
        }
        Ok(cookies)
    }

    /// Logs in with a ZenML Pro API key (`ZENPROKEY_...`) and keeps the access token.
    pub fn login(&mut self, api_key: &str) -> Result<(), ClientError> {
        let url = format!("{}/api/v1/login", self.url);
        let form = self.agent.post(&url).send_form([("password", api_key)]);
        let response = match form {
            Ok(response) if matches!(response.status().as_u16(), 401 | 403 | 422) => self
                .agent
                .post(&url)
                .header("Authorization", format!("Bearer {api_key}"))
                .send_empty(),
            other => other,
        };
        let answer: LoginAnswer = match read_json("POST", &url, response) {
            Err(ClientError::Status { status, detail, .. }) if matches!(status, 401 | 403 | 422) => {
                return Err(ClientError::Login {
                    url: self.url.clone(),
                    status,
                    detail,
                });
            }
            other => other?,
        };
        if answer.access_token.is_empty() {
            return Err(ClientError::Answer {
                method: "POST",
                url,
                message: "an empty `access_token`".into(),
            });
        }
        self.access_token = Some(answer.access_token);
        Ok(())
    }

    /// Every project the logged-in user may see, page by page (ZenML filters the list by the
    /// user's permissions: log in as someone who may read all of them).
    pub fn projects(&self) -> Result<Vec<Project>, ClientError> {
        let mut projects: Vec<Project> = Vec::new();
        let mut page = 1;
        loop {
            let url = format!("{}/api/v1/projects?page={page}&size={PAGE_SIZE}", self.url);
            let mut request = self.agent.get(&url);
            if let Some(token) = &self.access_token {
                request = request.header("Authorization", format!("Bearer {token}"));
            }
            let answer: Page = read_json("GET", &url, request.call())?;
            if answer.total_pages > MAX_PAGES {
                return Err(ClientError::Answer {
                    method: "GET",
                    url,
                    message: format!(
                        "{} pages of projects, more than the {MAX_PAGES} read",
                        answer.total_pages
                    ),
                });
            }
            for project in answer.items {
                // A project created while the pages are read may shift one into the next page.
                if !projects.iter().any(|known| known.id == project.id) {
                    projects.push(project);
                }
            }
            if page >= answer.total_pages {
                return Ok(projects);
            }
            page += 1;
        }
    }
}

/// A 2xx answer's JSON body as `T`; anything else as a [`ClientError`].
fn read_json<T: serde::de::DeserializeOwned>(
    method: &'static str,
    url: &str,
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<T, ClientError> {
    let mut response = response.map_err(|error| ClientError::Transport {
        method,
        url: url.to_owned(),
        message: transport_message(&error),
    })?;
    let status = response.status().as_u16();
    let answer = |message: String| ClientError::Answer {
        method,
        url: url.to_owned(),
        message,
    };
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_string()
        .map_err(|error| answer(transport_message(&error)))?;
    if !(200..300).contains(&status) {
        let detail = match response.headers().get("location") {
            Some(location) if (300..400).contains(&status) => format!(
                ": redirected to `{}` (give that URL)",
                location.to_str().unwrap_or_default()
            ),
            _ => detail(&text),
        };
        return Err(ClientError::Status {
            method,
            url: url.to_owned(),
            status,
            detail,
        });
    }
    serde_json::from_str(&text).map_err(|error| answer(error.to_string()))
}

/// `: <ZenML's error detail>` from an error body (`{"detail": "..."}` or a list of strings),
/// one line, at most 300 characters; empty when there is none.
fn detail(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let text = match value.get("detail") {
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map_or_else(|| item.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(": "),
        Some(other) => other.to_string(),
        None => return String::new(),
    };
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let short: String = line.chars().take(300).collect();
    format!(": {short}")
}

fn transport_message(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Timeout(_) => "no answer within the timeout (`--timeout-secs`)".to_owned(),
        ureq::Error::BodyExceedsLimit(limit) => format!("the answer is larger than {limit} bytes"),
        other => other.to_string(),
    }
}
