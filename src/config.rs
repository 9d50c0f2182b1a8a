//! Resolved configuration: the limits and timings the server runs with.
//!
//! The command line (and the `ZENML_AUTHZ_*` variable behind every flag) is parsed by clap in
//! `cli`; this module holds what it resolves to, with the defaults in one place.

use std::net::SocketAddr;
use std::time::Duration;

/// Default address: loopback only, as a sidecar's API should be.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8180";
/// Largest request body accepted (1 MiB); larger bodies get 413.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most requests in one batch.
pub const DEFAULT_MAX_BATCH_ITEMS: usize = 1000;
/// Most connections served at once; further connections wait to be accepted.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Seconds a client has to send its request headers.
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
/// Seconds in-flight requests get to finish after a shutdown signal.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 10;

/// Per-request limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Most items in a batch.
    pub max_batch_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_batch_items: DEFAULT_MAX_BATCH_ITEMS,
        }
    }
}

/// How the server listens and shuts down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Most connections at once.
    pub max_connections: usize,
    /// Time allowed for request headers.
    pub header_timeout: Duration,
    /// Time allowed for draining at shutdown.
    pub shutdown_grace: Duration,
}
