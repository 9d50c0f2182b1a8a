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
/// Seconds a keep-alive connection may stay idle between requests. Long on purpose: a server
/// that closes idle connections races a client that reuses one at that moment, and ZenML's
/// client over `http://` does not retry (the permission check becomes a 500).
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 300;
/// Seconds a client has to send its request body once the headers are in; slower bodies get
/// 408 and the connection is closed (a client trickling bytes cannot hold a slot).
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 10;
/// Seconds in-flight requests get to finish after a shutdown signal.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 10;
/// Most request-scoped entities (`additional_entities`) in one Cedar request.
pub const DEFAULT_MAX_REQUEST_ENTITIES: usize = 256;
/// Longest chain of request-scoped entities, each a parent of the one before (Cedar computes
/// the transitive closure of a request's entities; deep chains cost quadratic time).
pub const DEFAULT_MAX_ENTITY_DEPTH: usize = 32;
/// Longest entity id, in bytes (principal, action, resource, request-scoped entities and every
/// entity they or the context name).
pub const DEFAULT_MAX_ID_BYTES: usize = 1024;
/// Largest request context, in bytes of canonical JSON.
pub const DEFAULT_MAX_CONTEXT_BYTES: usize = 64 * 1024;
/// Milliseconds a request may take from its body being read to its answer (queueing for the
/// evaluation pool included); past it the answer is 503 and nothing is allowed.
pub const DEFAULT_REQUEST_DEADLINE_MS: u64 = 2000;
/// Requests that may wait for an evaluation thread; more get 503 with `Retry-After`.
pub const DEFAULT_EVALUATION_QUEUE: usize = 256;
/// Microseconds a job made of small items runs on an async worker before it yields (half of
/// 100 µs halved another connection's wait under a flood of batches, for a yield of ~0.5 µs).
pub const DEFAULT_EVALUATION_SLICE_US: u64 = 50;
/// Most bytes of cached decisions.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Seconds between full reloads of the shares from a shared database (PostgreSQL).
pub const DEFAULT_SHARES_RESYNC_SECS: u64 = 30;
/// Seconds a replica answers from its last known shares while the share database is
/// unreachable; after that it withholds them (shares grant nothing) until it answers again.
pub const DEFAULT_SHARES_MAX_STALE_SECS: u64 = 300;

/// How a replica follows a shared share database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareSync {
    /// Full reloads this often, under the change notifications.
    pub resync: std::time::Duration,
    /// How long the last known shares are trusted while the database is unreachable.
    pub max_stale: std::time::Duration,
    /// Whether `/readyz` answers 503 while the database is unreachable.
    pub ready_requires_store: bool,
}

impl Default for ShareSync {
    fn default() -> Self {
        Self {
            resync: std::time::Duration::from_secs(DEFAULT_SHARES_RESYNC_SECS),
            max_stale: std::time::Duration::from_secs(DEFAULT_SHARES_MAX_STALE_SECS),
            ready_requires_store: false,
        }
    }
}

/// Per-request limits: everything a request carries is bounded before any work is done on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Most items in a batch.
    pub max_batch_items: usize,
    /// Time to receive a body once the headers are in.
    pub body_timeout: Duration,
    /// Time from a read body to its answer.
    pub request_deadline: Duration,
    /// Most request-scoped entities in one Cedar request.
    pub max_request_entities: usize,
    /// Longest parent chain among a request's own entities.
    pub max_entity_depth: usize,
    /// Longest entity id in bytes.
    pub max_id_bytes: usize,
    /// Largest context in bytes of canonical JSON.
    pub max_context_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_batch_items: DEFAULT_MAX_BATCH_ITEMS,
            body_timeout: Duration::from_secs(DEFAULT_BODY_TIMEOUT_SECS),
            request_deadline: Duration::from_millis(DEFAULT_REQUEST_DEADLINE_MS),
            max_request_entities: DEFAULT_MAX_REQUEST_ENTITIES,
            max_entity_depth: DEFAULT_MAX_ENTITY_DEPTH,
            max_id_bytes: DEFAULT_MAX_ID_BYTES,
            max_context_bytes: DEFAULT_MAX_CONTEXT_BYTES,
        }
    }
}

/// How the server listens and shuts down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Address of the admin listener (health, readiness, metrics), if any.
    pub admin_listen: Option<SocketAddr>,
    /// Most connections at once.
    pub max_connections: usize,
    /// Time allowed for a request's headers, from a new connection or from its first byte.
    pub header_timeout: Duration,
    /// Time a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Time allowed for draining at shutdown.
    pub shutdown_grace: Duration,
}
