//! Bearer tokens of the ZenML API: HMAC-SHA256-signed, expiring, and bound to one workspace
//! (service-to-service, from `client_credentials`) or one user (API-key login in cloud mode).
//!
//! Format: `zat1.<base64url(claims JSON)>.<base64url(HMAC-SHA256 of "zat1.<claims>")>`. The key
//! comes from `--token-secret` or is random per process; a token from a restarted sidecar with
//! a random key is simply rejected, and ZenML logs in again on the 401.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const PREFIX: &str = "zat1.";

/// The signing key.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A key derived from a configured secret (stable across restarts and replicas).
    pub fn from_secret(secret: &str) -> Self {
        use sha2::Digest;
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// A random key for this process.
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self(key)
    }

    fn mac(&self, message: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable_mac());
        mac.update(message);
        mac
    }
}

#[allow(clippy::panic, reason = "HMAC accepts keys of every length")]
fn unreachable_mac() -> Hmac<Sha256> {
    panic!("HMAC rejected a 32-byte key")
}

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Subject {
    /// A ZenML server (workspace), logged in with its enrollment key.
    Workspace(String),
    /// A user or service account, logged in with an API key.
    User(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Subject,
    /// Expiry, seconds since the Unix epoch.
    exp: u64,
}

/// Why a token was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not one of our tokens, or tampered with.
    #[error("invalid token")]
    Invalid,
    /// Signed by us, but too old.
    #[error("expired token")]
    Expired,
}

/// A token for `subject`, valid until `expires_at` (Unix seconds).
pub fn issue(key: &TokenKey, subject: Subject, expires_at: u64) -> String {
    let claims = serde_json::to_vec(&Claims {
        sub: subject,
        exp: expires_at,
    })
    .unwrap_or_default();
    let signed = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(claims));
    let signature = key.mac(signed.as_bytes()).finalize().into_bytes();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The subject of a valid, unexpired token.
pub fn verify(key: &TokenKey, token: &str, now: u64) -> Result<Subject, TokenError> {
    let (signed, signature) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
    let claims = signed.strip_prefix(PREFIX).ok_or(TokenError::Invalid)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Invalid)?;
    key.mac(signed.as_bytes())
        .verify_slice(&signature)
        .map_err(|_| TokenError::Invalid)?;
    let claims = URL_SAFE_NO_PAD.decode(claims).map_err(|_| TokenError::Invalid)?;
    let claims: Claims = serde_json::from_slice(&claims).map_err(|_| TokenError::Invalid)?;
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims.sub)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_expiry_and_tampering() {
        let key = TokenKey::random();
        let token = issue(&key, Subject::Workspace("w".into()), 1_000);
        assert_eq!(verify(&key, &token, 999), Ok(Subject::Workspace("w".into())));
        assert_eq!(verify(&key, &token, 1_000), Err(TokenError::Expired));
        assert_eq!(verify(&TokenKey::random(), &token, 1), Err(TokenError::Invalid));
        let forged = issue(&key, Subject::User("u".into()), 1_000);
        let (_, forged_signature) = forged.rsplit_once('.').unwrap();
        let (signed, _) = token.rsplit_once('.').unwrap();
        assert_eq!(
            verify(&key, &format!("{signed}.{forged_signature}"), 1),
            Err(TokenError::Invalid)
        );
        for garbage in ["", "zat1.", "abc.def", "zat1.e30.AAAA"] {
            assert_eq!(verify(&key, garbage, 1), Err(TokenError::Invalid), "{garbage}");
        }
        let stable = TokenKey::from_secret("s");
        let token = issue(&stable, Subject::User("u".into()), 10);
        assert_eq!(
            verify(&TokenKey::from_secret("s"), &token, 1),
            Ok(Subject::User("u".into()))
        );
    }
}
