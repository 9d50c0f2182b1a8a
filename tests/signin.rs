//! The dashboard sign-in pages (`/authz/…`), the real binary over HTTP. What needs no ZenML
//! login is here, as a decision table of refusals; the sign-in that completes at a real ZenML
//! server, in a real browser behind nginx, is `tests/dashboard.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;

use common::Server;

const PRODUCTION: &str = "99baf825-b21e-442f-ba98-8246d8d9ac88";

/// The sample's try-out API key of `user`.
fn api_key(user: &str) -> String {
    let text = std::fs::read_to_string(common::root().join("tests/e2e/try-out-credentials.json")).unwrap();
    let credentials: serde_json::Value = serde_json::from_str(&text).unwrap();
    credentials["api_keys"][user].as_str().unwrap().to_owned()
}

/// A stand-in for the one ZenML call made before the login: `GET /api/v1/info`, answering
/// that the server is the production workspace; every other path is 500 (a login reaching it
/// would fail the row). Returns its base URL.
fn zenml_info_stub() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0_u8; 8192];
            let read = stream.read(&mut buffer).unwrap_or(0);
            let head = String::from_utf8_lossy(&buffer[..read]);
            let (status, body) = if head.starts_with("GET /api/v1/info ") {
                (
                    "200 OK",
                    format!("{{\"id\":\"{PRODUCTION}\",\"name\":\"production\",\"version\":\"0.98.0\"}}"),
                )
            } else {
                (
                    "500 Internal Server Error",
                    "{\"detail\":\"not in this stand-in\"}".to_owned(),
                )
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    base
}

#[test]
fn sign_in_is_off_without_a_zenml_url() {
    let server = Server::start(&[]);
    for path in ["/authz/login", "/authz/logout", "/authz/dashboard-shim.js"] {
        assert_eq!(server.send("GET", path, &[], None).status, 404, "{path}");
    }
}

#[test]
fn the_sign_in_page_is_strict_and_keeps_redirects_local() {
    let server = Server::start(&["--dashboard-zenml-url", "http://127.0.0.1:9"]);
    // (asked redirect, the form's hidden redirect)
    let table = [
        ("/projects%3Fx%3D1", "/projects?x=1"),
        ("%2F%2Fevil.example", "/"),
        ("https%3A%2F%2Fevil.example%2F", "/"),
        ("%22%3E%3Cscript%3E", "/"),
        ("%2F%22%3E%3Cscript%3E", "/&quot;&gt;&lt;script&gt;"),
    ];
    for (asked, kept) in table {
        let reply = server.send("GET", &format!("/authz/login?redirect={asked}"), &[], None);
        assert_eq!(reply.status, 200, "{asked}");
        let html = reply.body.as_str().unwrap();
        assert!(
            html.contains(&format!("name=\"redirect\" value=\"{kept}\"")),
            "{asked}: {html}"
        );
        assert!(!html.contains("<script>"), "{asked}: {html}");
        let csp = reply.header("content-security-policy").unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert_eq!(reply.header("cache-control"), Some("no-store"));
    }
    let signed_out = server.send("GET", "/authz/login?signed_out=1", &[], None);
    assert!(signed_out.body.as_str().unwrap().contains("You are signed out."));
    let shim = server.send("GET", "/authz/dashboard-shim.js", &[], None);
    assert_eq!(
        shim.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(
        shim.body
            .as_str()
            .unwrap()
            .contains("'/authz/login' + location.search")
    );
}

/// (sidecar, username, API key of, extra headers, status, message)
type Row<'a> = (
    &'a Server,
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    u16,
    &'a str,
);

#[test]
fn every_refused_sign_in_says_why_and_sets_no_cookie() {
    let zenml = zenml_info_stub();
    let server = Server::start(&["--dashboard-zenml-url", &zenml]);
    let unreachable = Server::start(&["--dashboard-zenml-url", "http://127.0.0.1:9"]);
    let same_site = [("sec-fetch-site", "same-origin")];
    // (sidecar, username, API key of, extra headers, status, message)
    let table: [Row<'_>; 8] = [
        (
            &server,
            "dave",
            "carol",
            &same_site,
            401,
            "Invalid username or API key.",
        ),
        (
            &server,
            "dave",
            "nobody",
            &same_site,
            401,
            "Invalid username or API key.",
        ),
        (
            &server,
            "mallory",
            "mallory",
            &same_site,
            401,
            "Invalid username or API key.",
        ),
        (
            &server,
            "",
            "dave",
            &same_site,
            401,
            "Invalid username or API key.",
        ),
        (
            &server,
            "dave",
            "dave",
            &[("sec-fetch-site", "cross-site")],
            403,
            "This sign-in form was not sent from this site.",
        ),
        (
            &server,
            "dave",
            "dave",
            &[("origin", "https://evil.example")],
            403,
            "This sign-in form was not sent from this site.",
        ),
        // ivan is an admin of staging only; this ZenML server is production.
        (
            &server,
            "ivan",
            "ivan",
            &same_site,
            403,
            "You have no access to the workspace `production`",
        ),
        (
            &unreachable,
            "dave",
            "dave",
            &same_site,
            502,
            "The ZenML server did not answer",
        ),
    ];
    for (sidecar, username, key_of, headers, status, message) in table {
        let key = if key_of == "nobody" {
            "ZENPROKEY_nobody_0000".to_owned()
        } else {
            api_key(key_of)
        };
        let reply = sidecar.post_form(
            "/authz/login",
            &[
                ("username", username),
                ("api_key", &key),
                ("redirect", "/projects"),
            ],
            headers,
        );
        let row = format!("{username} with {key_of}'s key {headers:?}");
        assert_eq!(reply.status, status, "{row}: {reply:?}");
        let html = reply.body.as_str().unwrap();
        assert!(html.contains(message), "{row}: {html}");
        assert!(!html.contains(&key), "{row}: the key is echoed");
        assert!(reply.header("set-cookie").is_none(), "{row}");
    }
    // The e-mail works as the username too (dave's key, dave's address): past the credentials,
    // to the login, which this stand-in does not serve.
    let reply = server.post_form(
        "/authz/login",
        &[
            ("username", "dave@acme.example"),
            ("api_key", &api_key("dave")),
            ("redirect", "/"),
        ],
        &same_site,
    );
    assert_eq!(reply.status, 502, "{reply:?}");
    assert!(
        reply
            .body
            .as_str()
            .unwrap()
            .contains("did not complete the sign-in"),
        "{reply:?}"
    );
}
