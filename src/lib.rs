//! zenml-authz: ZenML Pro's access control (organizations, workspaces, projects, teams, users,
//! service accounts, roles, shares) as Cedar policies in git, served as a sidecar.
//!
//! # Layout
//! - [`auth`]: caller authentication (bearer tokens, stored hashed) for the sidecar's own API
//! - [`cache`]: the decision cache (moka), keyed so that it can never serve a stale answer
//! - [`cli`]: the command line (`serve`, `validate`, `test`, `authorize`, `who-can`, `what-can`, `fmt`) and its exit codes
//! - [`decision_log`]: the JSON-lines audit log of decisions and shares (never blocks)
//! - [`config`]: resolved limits and listener settings, with their defaults
//! - [`policy`]: loading schemas, policies and the directory into an immutable snapshot
//! - [`directory`]: the organization directory file (YAML) and its Cedar entities
//! - [`engine`]: the pure decision function
//! - [`zenml`]: the ZenML backend API, resource strings, requests, tokens and shares
//! - [`table`]: decision tables (`zenml-authz test`)
//! - [`authoring`]: policy authoring: `authorize`, `who-can`, `what-can`, `fmt`, `validate`'s warnings
//! - [`watch`]: hot reload: file watching, debounce, SIGHUP, keep the last good snapshot
//! - [`index`]: the scope index: only the policies whose scope can match a request
//! - [`metrics`]: Prometheus metrics, declared once; `/metrics`
//! - [`http`]: the HTTP API (router, Cedar API, health, status)
//! - [`pool`]: the evaluation pool: caller-controlled work off the async workers, shed when full
//! - [`server`]: the accept loop and graceful shutdown
//! - [`state`]: what request handlers share
//! - [`store`]: durable shares (SQLite) and their live in-memory view
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
pub mod authoring;
pub mod cache;
pub mod cli;
pub mod config;
pub mod decision_log;
pub mod directory;
pub mod engine;
pub mod http;
pub mod index;
pub mod metrics;
pub mod policy;
pub mod pool;
pub mod server;
pub mod state;
pub mod store;
pub mod table;
pub mod watch;
pub mod zenml;

/// The allocator of every binary built from this crate (the sidecar, its tests and benches):
/// Cedar's evaluator and entity loading make many small, short-lived allocations, on which
/// mimalloc is faster than glibc's malloc and returns freed memory to the system sooner
/// (BENCHMARKS.md has the figures).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use engine::{AuthzRequest, Decision, decide};
pub use policy::{LoadError, PolicySnapshot, Sources};
pub use state::AppState;
