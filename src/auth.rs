//! Caller authentication for the sidecar's own API: the Cedar API (`/v1/is_authorized`,
//! `/v1/batch_is_authorized`), `/v1/status`, and `/metrics` on the main address.
//!
//! Callers present `Authorization: Bearer <token>`. The server keeps only the SHA-256 of each
//! token, with a name for logs (`--api-tokens-file`, `ZENML_AUTHZ_API_TOKEN_HASHES`): a token is
//! a random secret of at least [`MIN_TOKEN_BYTES`] bytes, so a plain hash is enough (there is
//! nothing to brute-force), and a leaked configuration gives away no token. The presented
//! token's hash is compared with every stored hash in constant time.
//!
//! The ZenML API has its own credentials (enrollment keys, API keys, workspace tokens) and is
//! not governed by these tokens; `/healthz` and `/readyz` are open (they reveal nothing).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest token `hash-token` accepts: 32 bytes, e.g. `openssl rand -hex 32` (64 characters).
pub const MIN_TOKEN_BYTES: usize = 32;

/// The accepted caller tokens, by hash.
#[derive(Clone, Default)]
pub struct CallerTokens {
    tokens: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for CallerTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.tokens.iter().map(|(name, _)| name))
            .finish()
    }
}

/// Why a caller was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallerError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token (Authorization: Bearer <token>)")]
    Missing,
    /// A token that matches no configured hash.
    #[error("invalid bearer token")]
    Invalid,
}

/// A malformed token-hash list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: line {line}: {message}")]
pub struct ParseError {
    /// Where the list came from (a file path or a variable).
    pub origin: String,
    /// 1-based line (or item) number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

// === impl CallerTokens ===

impl CallerTokens {
    /// Whether any token is configured (otherwise the API is unauthenticated).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// How many tokens are configured.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Adds the entries of a list: one per line (or `,`-separated), `<name> sha256:<hex>` or
    /// `<name>:sha256:<hex>`; blank lines and `#` comments are skipped.
    pub fn add_list(&mut self, origin: &str, text: &str) -> Result<(), ParseError> {
        let items = text.split(['\n', ',']).map(|item| match item.split_once('#') {
            Some((before, _)) => before.trim(),
            None => item.trim(),
        });
        for (index, item) in items.enumerate() {
            if item.is_empty() {
                continue;
            }
            let error = |message: String| ParseError {
                origin: origin.to_owned(),
                line: index + 1,
                message,
            };
            let (name, hash) = item
                .split_once(char::is_whitespace)
                .or_else(|| {
                    item.split_once(':')
                        .filter(|(_, rest)| rest.starts_with("sha256:"))
                })
                .ok_or_else(|| error(format!("`{item}`: expected `<name> sha256:<hex>`")))?;
            let name = name.trim();
            let hex_digest = hash
                .trim()
                .strip_prefix("sha256:")
                .ok_or_else(|| error(format!("`{name}`: expected `sha256:<hex>` after the name")))?;
            let mut digest = [0u8; 32];
            hex::decode_to_slice(hex_digest, &mut digest).map_err(|_| {
                error(format!(
                    "`{name}`: the hash must be 64 hexadecimal digits (`zenml-authz hash-token` prints it)"
                ))
            })?;
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(error(format!(
                    "`{name}`: a token's name is letters, digits, `-`, `_` and `.`"
                )));
            }
            if self.tokens.iter().any(|(known, _)| known == name) {
                return Err(error(format!("`{name}`: this name is given twice")));
            }
            self.tokens.push((name.to_owned(), digest));
        }
        Ok(())
    }

    /// The name of `token` (from `Authorization: Bearer`, `http::bearer`), or why it is
    /// refused; an empty token counts as missing.
    pub fn verify(&self, token: Option<&str>) -> Result<&str, CallerError> {
        let token = token
            .filter(|token| !token.is_empty())
            .ok_or(CallerError::Missing)?;
        let presented = hash(token);
        // Every stored hash is compared, so the time taken does not tell which one was close.
        let mut found = None;
        for (name, stored) in &self.tokens {
            if bool::from(stored.ct_eq(&presented)) {
                found = Some(name.as_str());
            }
        }
        found.ok_or(CallerError::Invalid)
    }
}

/// The SHA-256 of a token.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The line for a token file: `<name> sha256:<hex>`, or why the token is too weak.
pub fn hash_line(name: &str, token: &str) -> Result<String, String> {
    if token.len() < MIN_TOKEN_BYTES {
        return Err(format!(
            "the token has {} bytes; use at least {MIN_TOKEN_BYTES} random bytes (e.g. `openssl rand -hex 32`)",
            token.len()
        ));
    }
    Ok(format!("{name} sha256:{}", hex::encode(hash(token))))
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive, token
/// trimmed), for the caller tokens and the ZenML API alike.
pub fn bearer(headers: &hyper::HeaderMap) -> Option<&str> {
    let value = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_by_hash() {
        let token = "a".repeat(64);
        let other = "b".repeat(64);
        let mut tokens = CallerTokens::default();
        let line = hash_line("ci", &token).unwrap();
        tokens
            .add_list(
                "test",
                &format!("# comment\n{line}\n\n{}", hash_line("ops", &other).unwrap()),
            )
            .unwrap();
        assert_eq!(tokens.len(), 2);
        let header = |t: &str| format!("Bearer {t}");
        let rows: &[(Option<String>, Result<&str, CallerError>)] = &[
            (Some(header(&token)), Ok("ci")),
            (Some(format!("bearer  {other} ")), Ok("ops")),
            (Some(header(&"a".repeat(63))), Err(CallerError::Invalid)),
            (Some(format!("Basic {token}")), Err(CallerError::Missing)),
            (Some("Bearer ".into()), Err(CallerError::Missing)),
            (None, Err(CallerError::Missing)),
        ];
        for (value, expected) in rows {
            // The header as the router reads it: `http::bearer`, then the tokens.
            let mut headers = hyper::HeaderMap::new();
            if let Some(value) = value {
                headers.insert(hyper::header::AUTHORIZATION, value.parse().unwrap());
            }
            assert_eq!(&tokens.verify(bearer(&headers)), expected, "{value:?}");
        }
        assert!(hash_line("x", "short").is_err());
    }

    #[test]
    fn malformed_lists_name_the_line() {
        let good = format!("sha256:{}", "0".repeat(64));
        let rows = [
            (format!("ci {good}\nci {good}"), 2, "given twice"),
            ("ci sha256:zz".to_owned(), 1, "64 hexadecimal digits"),
            (format!("ci {}", "0".repeat(64)), 1, "expected `sha256:<hex>`"),
            ("justaname".to_owned(), 1, "expected `<name> sha256:<hex>`"),
            (format!("bad/name {good}"), 1, "a token's name"),
        ];
        for (text, line, message) in rows {
            let error = CallerTokens::default().add_list("f", &text).unwrap_err();
            assert_eq!(error.line, line, "{text}");
            assert!(error.message.contains(message), "{text}: {error}");
        }
        let mut tokens = CallerTokens::default();
        tokens.add_list("env", &format!("a:{good},b {good}")).unwrap();
        assert_eq!(tokens.len(), 2);
    }
}
