//! zenml-authz: ZenML Pro's access control (organizations, workspaces, projects, teams, users,
//! service accounts, roles, shares) as Cedar policies in git, served as a sidecar.
//!
//! # Layout
//! Dependencies run one way, each layer using only those above it in this list
//! (`tests/architecture.rs` checks it):
//! - [`error`], [`model`], [`config`]: leaves: load errors, ZenML's vocabulary (resource types,
//!   actions, entity type names), resolved limits and settings
//! - [`policy`]: the schema and policy files: read, parsed, validated
//! - [`directory`]: the organization directory file (YAML) and its Cedar entities
//! - [`index`]: the scope index: only the policies whose scope can match a request
//! - [`engine`]: a Cedar snapshot and the one decision path
//! - [`zenml`]: ZenML on Cedar: resource strings, request preparation, stand-ins, shares,
//!   memberships (who enters a workspace, whose shares a removal takes), tokens
//! - [`snapshot`]: a revision (engine + directory + ZenML view) and the `Loader` that builds it
//! - [`questions`]: who may, what a user or team may, what each role grants (CLI and console)
//! - [`store`]: durable shares (SQLite) and their live in-memory view
//! - [`cache`], [`pool`], [`metrics`], [`decision_log`], [`auth`]: the server's services
//! - [`state`]: what request handlers share, and the one report of it
//! - [`http`]: the HTTP API (one route table, one observed decision step, Cedar and ZenML handlers)
//! - [`server`]: the accept loop and graceful shutdown
//! - [`table`]: decision tables (`zenml-authz test`)
//! - [`watch`]: hot reload: file watching, debounce, SIGHUP, keep the last good snapshot
//! - [`zenml_client`]: a client of a ZenML server's own REST API (info, API-key login, projects)
//! - [`cli`]: the command line and its exit codes
//! - [`authoring`]: policy authoring, one file per command: `authorize`, `who-can`, `what-can`,
//!   `fmt`, `export`, `validate`'s warnings, `zenml-projects`
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
pub mod error;
pub mod http;
pub mod index;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod pool;
pub mod questions;
pub mod server;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod table;
pub mod watch;
pub mod zenml;
pub mod zenml_client;

/// The allocator of every binary built from this crate (the sidecar, its tests and benches):
/// Cedar's evaluator and entity loading make many small, short-lived allocations, on which
/// mimalloc is faster than glibc's malloc and returns freed memory to the system sooner; its
/// v2 (the `v2` feature) holds less than v3 after a load and after reloads (BENCHMARKS.md has the
/// figures). Its heaps are per thread: `watch::LoadThread` makes every snapshot on one thread.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use engine::{AuthzRequest, Batch, Decision, Engine};
pub use error::LoadError;
pub use snapshot::{Loader, Snapshot, Sources};
pub use state::AppState;
