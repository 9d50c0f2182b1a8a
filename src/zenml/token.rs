//! Bearer tokens of the ZenML API: HMAC-SHA256-signed, expiring, bound to one workspace
//! (service-to-service, from `client_credentials`) or one user (API-key login in cloud mode),
//! and to the credential they were minted from.
//!
//! Format: `zat2.<base64url(claims JSON)>.<base64url(HMAC-SHA256 of "zat2.<claims>")>`, claims
//! `{"sub": {"kind": "workspace"|"user", "id": …}, "gen": …, "exp": <Unix seconds>}`. Anything
//! else, `zat1` tokens (which had no `gen`) included, is invalid.
//!
//! **Secret.** From `ZENML_AUTHZ_TOKEN_SECRET` or the file `--token-secret-file`
//! (`ZENML_AUTHZ_TOKEN_SECRET_FILE`, trailing newlines trimmed), never from the command line
//! (every local user can read `/proc/*/cmdline`); at least [`MIN_SECRET_BYTES`] bytes, else
//! `serve` refuses to start ([`resolve_key`]). Without one, a random key per process: tokens end
//! at a restart, and ZenML logs in again on the 401.
//!
//! **Keys.** The secret is input keying material, not a key: HKDF-SHA256 (RFC 5869), salt
//! `zenml-authz/token/v2`, expands it into two independent 32-byte keys, the signing key
//! (info `signing`) and the generation key (info `generation`).
//!
//! **Generation.** `gen` is the first 16 bytes (base64url) of HMAC-SHA256(generation key, the
//! directory's stored SHA-256 of the credential): the workspace's enrollment key, or the user's
//! API key. Keyed, so a leaked token is no oracle for guessing the credential. [`verify`] checks
//! it against the directory of the snapshot answering the request: a workspace token only while
//! the workspace's current enrollment key has that generation, a user token only while that API
//! key is listed for the user, not revoked, and the user is active. Revoking a key, rotating an
//! enrollment key or deactivating a user thus ends its tokens at the next reload, not at expiry.
//! Lifetimes are bounded: [`MIN_TTL_SECS`]..=[`MAX_TTL_SECS`].

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::directory::Directory;

const PREFIX: &str = "zat2.";
/// HKDF salt: names the use, so the same secret used elsewhere gives other keys.
const HKDF_SALT: &[u8] = b"zenml-authz/token/v2";
/// Bytes of the generation fingerprint a token carries (128 bits).
const GENERATION_BYTES: usize = 16;

/// Fewest bytes of token secret `serve` accepts (256 bits, e.g. `openssl rand -hex 32` gives 64).
pub const MIN_SECRET_BYTES: usize = 32;
/// Largest token secret file read; a larger file (or `/dev/urandom`) is refused, not read whole.
pub const MAX_SECRET_FILE_BYTES: u64 = 4096;
/// Variable holding the token secret itself (there is no flag for it: see the module doc).
pub const ENV_TOKEN_SECRET: &str = "ZENML_AUTHZ_TOKEN_SECRET";
/// Default lifetime of issued tokens, seconds.
pub const DEFAULT_TTL_SECS: u64 = 3600;
/// Shortest lifetime: ZenML renews a token 5 minutes before it expires.
pub const MIN_TTL_SECS: u64 = 301;
/// Longest lifetime (24 h): a token outlives nothing that revoked it by more than this, even if
/// the directory could not be reloaded.
pub const MAX_TTL_SECS: u64 = 86_400;

/// The keys of issued tokens, signing and the generation fingerprints, each held as an HMAC
/// already keyed (cloned per use: keying hashes two blocks, a quarter of verifying a token).
#[derive(Clone)]
pub struct TokenKey {
    signing_mac: Hmac<Sha256>,
    generation_mac: Hmac<Sha256>,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

// === impl TokenKey ===

impl TokenKey {
    /// The keys derived from `secret` by HKDF-SHA256 (stable across restarts and replicas). No
    /// strength check: [`resolve_key`] is the one that refuses weak secrets.
    pub fn derive(secret: &[u8]) -> Self {
        let (signing, generation) = derive_keys(secret);
        Self {
            signing_mac: new_hmac(&signing),
            generation_mac: new_hmac(&generation),
        }
    }

    /// Random keys for this process.
    pub fn random() -> Self {
        let mut secret = [0u8; 32];
        secret[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        secret[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self::derive(&secret)
    }

    /// The generation of a credential whose stored SHA-256 is `credential_sha256` (an enrollment
    /// key's or an API key's), as a token carries it.
    pub fn generation(&self, credential_sha256: &[u8; 32]) -> String {
        let mut mac = self.generation_mac.clone();
        mac.update(credential_sha256);
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..GENERATION_BYTES])
    }

    fn mac(&self, message: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.signing_mac.clone();
        mac.update(message);
        mac
    }
}

/// The signing and generation keys of `secret` (HKDF-SHA256: extract, then one block of expand
/// for each).
fn derive_keys(secret: &[u8]) -> ([u8; 32], [u8; 32]) {
    let prk = hmac_sha256(HKDF_SALT, &[secret]);
    (
        hmac_sha256(&prk, &[b"signing", &[1]]),
        hmac_sha256(&prk, &[b"generation", &[1]]),
    )
}

/// HMAC-SHA256 of the concatenated `parts` under `key` (HKDF's extract, and its expand for one
/// 32-byte block, `T(1) = HMAC(PRK, info || 0x01)`).
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = new_hmac(key);
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn new_hmac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable_mac())
}

#[allow(clippy::panic, reason = "HMAC accepts keys of every length")]
fn unreachable_mac() -> Hmac<Sha256> {
    panic!("HMAC rejected a key")
}

/// Where a token secret came from (for messages; never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `ZENML_AUTHZ_TOKEN_SECRET`.
    Env,
    /// `--token-secret-file`.
    File(PathBuf),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env => write!(f, "`{ENV_TOKEN_SECRET}`"),
            SecretSource::File(path) => write!(f, "file `{}`", path.display()),
        }
    }
}

/// Why `serve` refuses the token secret it was given (exit code 2, before loading anything).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Set, but empty: anyone could sign tokens.
    #[error(
        "token secret from {0} is empty: give at least {MIN_SECRET_BYTES} random bytes (e.g. `openssl rand -hex 32`), or set none for a random key per process"
    )]
    Empty(SecretSource),
    /// Set, but too short to resist guessing.
    #[error(
        "token secret from {from} is {len} bytes: at least {MIN_SECRET_BYTES} are required (e.g. `openssl rand -hex 32`)"
    )]
    TooShort {
        /// Where it came from.
        from: SecretSource,
        /// Its length in bytes.
        len: usize,
    },
    /// The secret file cannot be read.
    #[error("token secret file `{path}`: {message}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Both the variable and the file are set.
    #[error("token secret: set either `{ENV_TOKEN_SECRET}` or `--token-secret-file`, not both")]
    Ambiguous,
    /// The removed `--token-secret` flag was given.
    #[error(
        "`--token-secret` is no longer accepted: every local user can read a command line; set `{ENV_TOKEN_SECRET}` or `--token-secret-file` instead"
    )]
    OnCommandLine,
}

/// The token keys `serve` runs with: from `env_secret` (the value of
/// `ZENML_AUTHZ_TOKEN_SECRET`, if set) or the file `secret_file`, which must hold at least
/// [`MIN_SECRET_BYTES`] bytes (a file's trailing `\n`/`\r\n` are trimmed); random when neither
/// is given.
pub fn resolve_key(env_secret: Option<Vec<u8>>, secret_file: Option<&Path>) -> Result<TokenKey, SecretError> {
    let (secret, source) = match (env_secret, secret_file) {
        (Some(_), Some(_)) => return Err(SecretError::Ambiguous),
        (None, None) => return Ok(TokenKey::random()),
        (Some(secret), None) => (secret, SecretSource::Env),
        (None, Some(path)) => (read_secret_file(path)?, SecretSource::File(path.to_owned())),
    };
    match secret.len() {
        0 => Err(SecretError::Empty(source)),
        len if len < MIN_SECRET_BYTES => Err(SecretError::TooShort { from: source, len }),
        _ => Ok(TokenKey::derive(&secret)),
    }
}

fn read_secret_file(path: &Path) -> Result<Vec<u8>, SecretError> {
    let unreadable = |message: String| SecretError::Unreadable {
        path: path.to_owned(),
        message,
    };
    let io = |error: std::io::Error| {
        unreadable(match error.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_owned(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
            _ => error.to_string(),
        })
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut secret = Vec::new();
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut secret)
        .map_err(io)?;
    if secret.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(unreadable(format!("larger than {MAX_SECRET_FILE_BYTES} bytes")));
    }
    while secret.last().is_some_and(|byte| matches!(byte, b'\n' | b'\r')) {
        secret.pop();
    }
    Ok(secret)
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
#[serde(deny_unknown_fields)]
struct Claims {
    sub: Subject,
    /// Generation of the credential the token was minted from ([`TokenKey::generation`]).
    #[serde(rename = "gen")]
    generation: String,
    /// Expiry, seconds since the Unix epoch.
    exp: u64,
}

/// Why a token was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not one of our tokens (or of an older format), or tampered with.
    #[error("invalid token")]
    Invalid,
    /// Signed by us, but too old.
    #[error("expired token")]
    Expired,
    /// Signed by us and unexpired, but its credential was revoked or rotated, or its workspace
    /// or user is gone or deactivated.
    #[error("revoked token: its credential was revoked or replaced; log in again")]
    Revoked,
}

/// A token for `subject`, minted from the credential of generation `generation`
/// ([`TokenKey::generation`]), valid until `expires_at` (Unix seconds).
pub fn issue(key: &TokenKey, subject: Subject, generation: String, expires_at: u64) -> String {
    let claims = serde_json::to_vec(&Claims {
        sub: subject,
        generation,
        exp: expires_at,
    })
    .unwrap_or_default();
    let signed = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(claims));
    let signature = key.mac(signed.as_bytes()).finalize().into_bytes();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The subject of a valid, unexpired token whose credential is still current in `directory`
/// (the directory of the snapshot answering the request; none: every token is revoked).
pub fn verify(
    key: &TokenKey,
    token: &str,
    now: u64,
    directory: Option<&Directory>,
) -> Result<Subject, TokenError> {
    let claims = verify_signature(key, token)?;
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    let directory = directory.ok_or(TokenError::Revoked)?;
    let current = match &claims.sub {
        Subject::Workspace(id) => directory
            .workspaces
            .get(id)
            .and_then(|workspace| workspace.enrollment_key_sha256)
            .is_some_and(|hash| key.generation(&hash) == claims.generation),
        Subject::User(id) => directory.users.get(id).is_some_and(|user| {
            user.active
                && user.api_keys.iter().any(|hash| {
                    directory
                        .api_keys
                        .get(hash)
                        .is_some_and(|(owner, revoked)| !revoked && owner == id)
                        && key.generation(hash) == claims.generation
                })
        }),
    };
    if current {
        Ok(claims.sub)
    } else {
        Err(TokenError::Revoked)
    }
}

fn verify_signature(key: &TokenKey, token: &str) -> Result<Claims, TokenError> {
    let (signed, signature) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
    let claims = signed.strip_prefix(PREFIX).ok_or(TokenError::Invalid)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Invalid)?;
    key.mac(signed.as_bytes())
        .verify_slice(&signature)
        .map_err(|_| TokenError::Invalid)?;
    let claims = URL_SAFE_NO_PAD.decode(claims).map_err(|_| TokenError::Invalid)?;
    serde_json::from_slice(&claims).map_err(|_| TokenError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{Named, User, Workspace};

    fn hash(text: &str) -> [u8; 32] {
        use sha2::Digest;
        Sha256::digest(text.as_bytes()).into()
    }

    /// Workspace `w` (enrollment key `enroll`), user `u` (keys `k1`, revoked `k0`), inactive
    /// user `x` (key `kx`).
    fn directory() -> Directory {
        let mut directory = Directory::default();
        directory.workspaces.insert(
            "w".into(),
            Workspace {
                named: Named {
                    id: "w".into(),
                    name: "w".into(),
                },
                uid: crate::model::uid("Workspace", "w"),
                enrollment_key_sha256: Some(hash("enroll")),
            },
        );
        for (id, active, keys) in [("u", true, vec!["k1", "k0"]), ("x", false, vec!["kx"])] {
            directory.users.insert(
                id.into(),
                Box::new(User {
                    named: Named {
                        id: id.into(),
                        name: id.into(),
                    },
                    uid: crate::model::uid("User", id),
                    full_name: None,
                    email: None,
                    is_service_account: false,
                    active,
                    teams: Vec::new(),
                    api_keys: keys.iter().map(|k| hash(k)).collect(),
                }),
            );
            for k in keys {
                directory.api_keys.insert(hash(k), (id.into(), k == "k0"));
            }
        }
        directory
    }

    #[test]
    fn round_trip_expiry_and_tampering() {
        let key = TokenKey::random();
        let directory = directory();
        let d = Some(&directory);
        let generation = key.generation(&hash("enroll"));
        let token = issue(&key, Subject::Workspace("w".into()), generation.clone(), 1_000);
        assert_eq!(verify(&key, &token, 999, d), Ok(Subject::Workspace("w".into())));
        assert_eq!(verify(&key, &token, 1_000, d), Err(TokenError::Expired));
        assert_eq!(
            verify(&TokenKey::random(), &token, 1, d),
            Err(TokenError::Invalid)
        );
        assert_eq!(verify(&key, &token, 1, None), Err(TokenError::Revoked));
        let forged = issue(&key, Subject::User("u".into()), generation, 1_000);
        let (_, forged_signature) = forged.rsplit_once('.').unwrap();
        let (signed, _) = token.rsplit_once('.').unwrap();
        assert_eq!(
            verify(&key, &format!("{signed}.{forged_signature}"), 1, d),
            Err(TokenError::Invalid)
        );
        for garbage in ["", "zat2.", "abc.def", "zat2.e30.AAAA"] {
            assert_eq!(verify(&key, garbage, 1, d), Err(TokenError::Invalid), "{garbage}");
        }
        let secret = b"0123456789abcdef0123456789abcdef";
        let token = issue(
            &TokenKey::derive(secret),
            Subject::User("u".into()),
            TokenKey::derive(secret).generation(&hash("k1")),
            10,
        );
        assert_eq!(
            verify(&TokenKey::derive(secret), &token, 1, d),
            Ok(Subject::User("u".into()))
        );
    }

    #[test]
    fn only_tokens_of_current_credentials_verify() {
        let key = TokenKey::derive(&[7; 32]);
        let directory = directory();
        let workspace = |credential: &str| {
            issue(
                &key,
                Subject::Workspace("w".into()),
                key.generation(&hash(credential)),
                10,
            )
        };
        let user = |id: &str, credential: &str| {
            issue(
                &key,
                Subject::User(id.into()),
                key.generation(&hash(credential)),
                10,
            )
        };
        // (what, token, verifies)
        let table = [
            ("workspace, current enrollment key", workspace("enroll"), true),
            ("workspace, another key", workspace("old-enroll"), false),
            (
                "unknown workspace",
                issue(
                    &key,
                    Subject::Workspace("v".into()),
                    key.generation(&hash("enroll")),
                    10,
                ),
                false,
            ),
            ("user, listed key", user("u", "k1"), true),
            ("user, revoked key", user("u", "k0"), false),
            ("user, unknown key", user("u", "k9"), false),
            ("user, another user's key", user("u", "kx"), false),
            ("inactive user", user("x", "kx"), false),
            ("unknown user", user("y", "k1"), false),
            (
                "generation of a raw hash",
                issue(
                    &key,
                    Subject::User("u".into()),
                    URL_SAFE_NO_PAD.encode(&hash("k1")[..16]),
                    10,
                ),
                false,
            ),
        ];
        for (what, token, verifies) in table {
            let expected = if verifies {
                Ok(())
            } else {
                Err(TokenError::Revoked)
            };
            assert_eq!(
                verify(&key, &token, 1, Some(&directory)).map(|_| ()),
                expected,
                "{what}"
            );
        }
    }

    #[test]
    fn old_format_and_missing_generation_are_invalid() {
        let key = TokenKey::derive(&[7; 32]);
        let directory = directory();
        let sign = |signed: String| {
            let signature = key.mac(signed.as_bytes()).finalize().into_bytes();
            format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
        };
        for (prefix, claims) in [
            ("zat1.", r#"{"sub":{"kind":"workspace","id":"w"},"exp":10}"#),
            ("zat2.", r#"{"sub":{"kind":"workspace","id":"w"},"exp":10}"#),
            (
                "zat2.",
                r#"{"sub":{"kind":"workspace","id":"w"},"gen":"x","exp":10,"more":1}"#,
            ),
        ] {
            let token = sign(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(claims)));
            assert_eq!(
                verify(&key, &token, 1, Some(&directory)),
                Err(TokenError::Invalid),
                "{claims}"
            );
        }
    }

    #[test]
    fn hkdf_matches_rfc_5869_test_case_1() {
        // RFC 5869 A.1: the first 32 bytes of OKM are T(1).
        let ikm = [0x0b; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let prk = hmac_sha256(&salt, &[&ikm]);
        assert_eq!(
            hex::encode(prk),
            "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
        );
        assert_eq!(
            hex::encode(hmac_sha256(&prk, &[&info, &[1]])),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        );
    }

    /// The pre-keyed MACs are HMAC-SHA256 under their keys, use after use (RFC 4231's test
    /// case 2 pins `hmac_sha256` itself).
    #[test]
    fn pre_keyed_macs_are_hmac_under_their_keys() {
        let rfc = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            rfc.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let secret = b"pre-keyed-macs-secret-0123456789abcdef";
        let key = TokenKey::derive(secret);
        let (signing, generation) = derive_keys(secret);
        for message in [&b""[..], b"zat2.e30", &[7u8; 200], b"zat2.e30"] {
            let mac: [u8; 32] = key.mac(message).finalize().into_bytes().into();
            assert_eq!(mac, hmac_sha256(&signing, &[message]));
        }
        for credential in [hash("enroll"), hash("k1"), hash("enroll")] {
            let expected = hmac_sha256(&generation, &[&credential]);
            assert_eq!(
                key.generation(&credential),
                URL_SAFE_NO_PAD.encode(&expected[..GENERATION_BYTES])
            );
        }
    }

    #[test]
    fn secrets_are_resolved_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let long = "x".repeat(MIN_SECRET_BYTES);
        let with_newline = write("nl", format!("{long}\n").as_bytes());
        let with_crlf = write("crlf", format!("{long}\r\n").as_bytes());
        let short = write("short", b"0123456789abcdef0123456789abcde\n");
        let empty = write("empty", b"\n");
        let big = write("big", &vec![b'x'; MAX_SECRET_FILE_BYTES as usize + 1]);
        let missing = dir.path().join("missing");
        let env = |s: &str| Some(s.as_bytes().to_vec());
        let file = SecretSource::File;
        // The same key as the bare secret: the file's line ending is not part of it.
        let signs = |key: TokenKey| key.mac(b"which key").finalize().into_bytes();
        let expected = signs(TokenKey::derive(long.as_bytes()));
        assert_eq!(signs(resolve_key(None, Some(&with_newline)).unwrap()), expected);
        assert_eq!(signs(resolve_key(None, Some(&with_crlf)).unwrap()), expected);
        assert_eq!(signs(resolve_key(env(&long), None).unwrap()), expected);
        assert_ne!(signs(resolve_key(None, None).unwrap()), expected);
        // (what, result)
        let table = [
            (
                "empty variable",
                resolve_key(env(""), None).err(),
                Some(SecretError::Empty(SecretSource::Env)),
            ),
            (
                "empty file",
                resolve_key(None, Some(&empty)).err(),
                Some(SecretError::Empty(file(empty.clone()))),
            ),
            (
                "short variable",
                resolve_key(env(&long[1..]), None).err(),
                Some(SecretError::TooShort {
                    from: SecretSource::Env,
                    len: 31,
                }),
            ),
            (
                "short file",
                resolve_key(None, Some(&short)).err(),
                Some(SecretError::TooShort {
                    from: file(short.clone()),
                    len: 31,
                }),
            ),
            (
                "both",
                resolve_key(env(&long), Some(&with_newline)).err(),
                Some(SecretError::Ambiguous),
            ),
        ];
        for (what, got, expected) in table {
            assert_eq!(got, expected, "{what}");
        }
        for path in [big, missing] {
            assert!(
                matches!(
                    resolve_key(None, Some(&path)),
                    Err(SecretError::Unreadable { .. })
                ),
                "{}",
                path.display()
            );
        }
        let message = resolve_key(env("short"), None).err().unwrap().to_string();
        assert_eq!(
            message,
            "token secret from `ZENML_AUTHZ_TOKEN_SECRET` is 5 bytes: at least 32 are required (e.g. `openssl rand -hex 32`)"
        );
    }
}
