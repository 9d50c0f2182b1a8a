//! The command line: `serve`, `validate`, `test`, `authorize`, `who-can`, `what-can`, `fmt`,
//! `export`, `hash-token`, `zenml-projects` and `impact`. Every
//! flag has a `ZENML_AUTHZ_*` environment variable; flags win over variables, variables over defaults.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cache::CacheConfig;
use crate::config::{self, Limits, ServerConfig};
use crate::snapshot::Sources;
use crate::watch::{WatchConfig, WatchMode};
use crate::zenml::token;

/// Exit codes, the same for every command.
pub mod exit {
    /// Success: served and shut down cleanly, sources valid, all tests passed.
    pub const OK: i32 = 0;
    /// The policy sources are invalid (`serve` exits before binding), or a test failed.
    pub const INVALID: i32 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: i32 = 2;
    /// The listen address cannot be bound, or another runtime failure.
    pub const RUNTIME: i32 = 3;
    /// `authorize`: the decision is Allow (the same code as `OK`).
    pub const ALLOW: i32 = 0;
    /// `authorize`: the decision is Deny (Cedar's CLI uses 2, which is clap's `USAGE` here).
    pub const DENY: i32 = 1;
    /// `fmt --check`: some files are not formatted.
    pub const UNFORMATTED: i32 = 1;
    /// `impact`: some decision differs between the base and the current sources, or the policy
    /// sets differ on some request the schema allows.
    pub const CHANGED: i32 = 1;
    /// `zenml-projects`: a directory project is not in the ZenML server with the same name and
    /// id (without `--write`, or one `--write` cannot fix).
    pub const DIFFERENT: i32 = 1;
    /// `authorize`, `who-can`, `what-can`, `fmt`: no answer: bad input (unknown user,
    /// workspace, project, action or resource type; malformed JSON), invalid policy sources, or
    /// a file that cannot be read, parsed or written. `export`: a file that cannot be written.
    /// `zenml-projects`: the same, or the ZenML server cannot be reached, refuses the API key or
    /// answers what ZenML does not.
    pub const ERROR: i32 = 4;
    /// `verify`: an invariant is refuted (a counterexample is printed).
    pub const REFUTED: i32 = 1;
    /// `verify`: no invariant refuted, but the solver gave no answer for one (time limit, crash,
    /// no solver): never read as proved. `impact`: no change found, but the solver gave no answer
    /// for some request environment: never read as equivalent.
    pub const UNKNOWN: i32 = 5;
}

/// Policy-as-code authorization sidecar for ZenML: ZenML Pro's RBAC as Cedar policies.
#[derive(Debug, Parser)]
#[command(name = "zenml-authz", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the authorization API (Cedar API, health and status).
    Serve(Box<ServeArgs>),
    /// Check schemas, policies and directory; print every error; exit 0 when valid.
    Validate(ValidateArgs),
    /// Run decision-table files against the policies; print failures and `N passed, M failed`.
    Test(TestArgs),
    /// Decide one request and explain it: ALLOW/DENY, the determining policies (file:line and
    /// text), evaluation errors. Exit 0 ALLOW, 1 DENY, 4 error.
    Authorize(AuthorizeArgs),
    /// List the users, service accounts and teams that may do an action on a resource.
    WhoCan(WhoCanArgs),
    /// Show a user's bindings and, per workspace and project, resource type -> allowed actions.
    WhatCan(WhatCanArgs),
    /// Format `.cedar` files with Cedar's formatter; `--check` lists those it would change.
    Fmt(FmtArgs),
    /// Write the Cedar the sidecar evaluates (entities.json, policies.cedar with each policy's
    /// `@id`, schema.cedarschema) for Cedar's own tools, e.g. `cedar authorize`.
    Export(ExportArgs),
    /// Read a caller token from standard input and print its line for `--api-tokens-file`.
    HashToken(HashTokenArgs),
    /// Compare a ZenML server's projects with the directory's projects of that workspace (by
    /// name); `--write` puts ZenML's project ids into the directory file.
    ZenmlProjects(ZenmlProjectsArgs),
    /// Prove the invariants (`invariants/`) for every possible organization with the cvc5 SMT
    /// solver: proved, refuted (a counterexample, replayed) or unknown, per invariant.
    Verify(VerifyArgs),
    /// Every decision an edit changes: the what-can grid of every user and service account at
    /// every workspace and project, under `--base` (a directory or a git revision) and now.
    Impact(ImpactArgs),
}

/// `hash-token` flags.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Reads the token from standard input (so it stays out of the shell history and \
                  the process list), e.g. `openssl rand -hex 32 | tee token | zenml-authz hash-token --name ci`. \
                  Exit codes: 0 printed, 4 a token shorter than 32 bytes or unreadable input."
)]
pub struct HashTokenArgs {
    /// The token's name, shown in logs.
    #[arg(long, default_value = "caller")]
    pub name: String,
}

/// Where the policy sources are (shared by every command).
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Directory searched recursively for `*.cedar` policy files (or one file).
    #[arg(long, env = "ZENML_AUTHZ_POLICIES", default_value = "policies")]
    pub policies: PathBuf,
    /// Directory searched recursively for `*.cedarschema` / `*.cedarschema.json` (or one file).
    #[arg(long, env = "ZENML_AUTHZ_SCHEMAS", default_value = "schemas")]
    pub schemas: PathBuf,
    /// The organization directory (YAML), or Cedar entities JSON when it ends in `.json`.
    #[arg(
        long,
        env = "ZENML_AUTHZ_DIRECTORY",
        default_value = "policies/directory.yaml"
    )]
    pub directory: PathBuf,
}

impl SourceArgs {
    /// The resolved source paths.
    pub fn sources(&self) -> Sources {
        Sources {
            policies: self.policies.clone(),
            schemas: self.schemas.clone(),
            directory: self.directory.clone(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON lines otherwise.
    Auto,
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// `serve` flags.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Policy sources.
    #[command(flatten)]
    pub sources: SourceArgs,
    /// Address and port to listen on (port 0 picks a free port, printed at start).
    #[arg(long, env = "ZENML_AUTHZ_LISTEN", default_value = config::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Largest request body in bytes; larger bodies get 413.
    #[arg(long, env = "ZENML_AUTHZ_MAX_BODY_BYTES", default_value_t = config::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Most requests in one batch.
    #[arg(long, env = "ZENML_AUTHZ_MAX_BATCH", default_value_t = config::DEFAULT_MAX_BATCH_ITEMS)]
    pub max_batch: usize,
    /// Most connections served at once.
    #[arg(long, env = "ZENML_AUTHZ_MAX_CONNECTIONS", default_value_t = config::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Seconds a client has to send request headers (from connecting, or from a request's first
    /// byte).
    #[arg(long, env = "ZENML_AUTHZ_HEADER_TIMEOUT", default_value_t = config::DEFAULT_HEADER_TIMEOUT_SECS)]
    pub header_timeout_secs: u64,
    /// Seconds a keep-alive connection may wait for its next request before it is closed.
    #[arg(long, env = "ZENML_AUTHZ_IDLE_TIMEOUT", default_value_t = config::DEFAULT_IDLE_TIMEOUT_SECS)]
    pub idle_timeout_secs: u64,
    /// Seconds a client has to send the request body once its headers are in; slower bodies get
    /// 408 and the connection is closed.
    #[arg(long, env = "ZENML_AUTHZ_BODY_TIMEOUT", default_value_t = config::DEFAULT_BODY_TIMEOUT_SECS)]
    pub body_timeout_secs: u64,
    /// Milliseconds from a read body to its answer, waiting for an evaluation thread included;
    /// past it the answer is 503 (never an allow).
    #[arg(long, env = "ZENML_AUTHZ_REQUEST_DEADLINE_MS", default_value_t = config::DEFAULT_REQUEST_DEADLINE_MS)]
    pub request_deadline_ms: u64,
    /// Jobs whose cost the caller controls (request-scoped entities, batches, long ZenML pages)
    /// that run at once: on a blocking thread, or sliced on their own task. Default: the number
    /// of CPUs.
    #[arg(long, env = "ZENML_AUTHZ_EVALUATION_THREADS")]
    pub evaluation_threads: Option<usize>,
    /// Such jobs that may wait for their turn; more are refused at once with 503 and
    /// `Retry-After`.
    #[arg(long, env = "ZENML_AUTHZ_EVALUATION_QUEUE", default_value_t = config::DEFAULT_EVALUATION_QUEUE)]
    pub evaluation_queue: usize,
    /// Microseconds a job made of small items (a batch of small Cedar requests, a long ZenML
    /// page) runs on an async worker before it lets other connections' requests run: shorter
    /// serves them sooner under a flood of batches, longer yields less often.
    #[arg(long, env = "ZENML_AUTHZ_EVALUATION_SLICE_US", default_value_t = config::DEFAULT_EVALUATION_SLICE_US)]
    pub evaluation_slice_us: u64,
    /// Most request-scoped entities (`additional_entities`) in one Cedar request.
    #[arg(long, env = "ZENML_AUTHZ_MAX_REQUEST_ENTITIES", default_value_t = config::DEFAULT_MAX_REQUEST_ENTITIES)]
    pub max_request_entities: usize,
    /// Longest chain of request-scoped entities, each a parent of the next.
    #[arg(long, env = "ZENML_AUTHZ_MAX_ENTITY_DEPTH", default_value_t = config::DEFAULT_MAX_ENTITY_DEPTH)]
    pub max_entity_depth: usize,
    /// Longest entity id in a request, in bytes.
    #[arg(long, env = "ZENML_AUTHZ_MAX_ID_BYTES", default_value_t = config::DEFAULT_MAX_ID_BYTES)]
    pub max_id_bytes: usize,
    /// Largest request context, in bytes of JSON.
    #[arg(long, env = "ZENML_AUTHZ_MAX_CONTEXT_BYTES", default_value_t = config::DEFAULT_MAX_CONTEXT_BYTES)]
    pub max_context_bytes: usize,
    /// A second address serving only `/healthz`, `/readyz` and `/metrics`, without caller
    /// tokens (for probes and Prometheus); the main address then stops serving `/metrics`.
    #[arg(long, env = "ZENML_AUTHZ_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// File of caller tokens for the Cedar API, `/v1/status` and `/metrics`: one
    /// `<name> sha256:<hex>` per line (`zenml-authz hash-token` prints one).
    #[arg(long, env = "ZENML_AUTHZ_API_TOKENS_FILE")]
    pub api_tokens_file: Option<PathBuf>,
    /// Caller tokens as `<name>:sha256:<hex>`, comma-separated (hashes, not secrets).
    #[arg(long, env = "ZENML_AUTHZ_API_TOKEN_HASHES", hide_env_values = true)]
    pub api_token_hashes: Option<String>,
    /// Serve without caller tokens on a non-loopback address: anyone who reaches the port may
    /// use the Cedar API and read status and metrics. Refused otherwise.
    #[arg(long, env = "ZENML_AUTHZ_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,
    /// Seconds in-flight requests get to finish at shutdown (SIGTERM, Ctrl-C).
    #[arg(long, env = "ZENML_AUTHZ_SHUTDOWN_GRACE", default_value_t = config::DEFAULT_SHUTDOWN_GRACE_SECS)]
    pub shutdown_grace_secs: u64,
    /// Path prefix of the ZenML API (`ZENML_SERVER_PRO_API_URL=http://<listen><this>`).
    #[arg(long, env = "ZENML_AUTHZ_ZENML_BASE_PATH", default_value = "/zenml")]
    pub zenml_base_path: String,
    /// Lifetime of issued bearer tokens, seconds: at least 301 (ZenML renews 5 minutes before
    /// expiry), at most 86400.
    #[arg(
        long,
        env = "ZENML_AUTHZ_TOKEN_TTL",
        default_value_t = token::DEFAULT_TTL_SECS,
        value_parser = clap::value_parser!(u64).range(token::MIN_TTL_SECS..=token::MAX_TTL_SECS)
    )]
    pub token_ttl_secs: u64,
    /// The ZenML server whose dashboard people sign in to through the sidecar (`/authz/login`),
    /// as the sidecar reaches it, e.g. `http://127.0.0.1:8080`. Unset: no sign-in pages.
    #[arg(long, env = "ZENML_AUTHZ_DASHBOARD_ZENML_URL")]
    pub dashboard_zenml_url: Option<String>,
    /// File holding the secret that signs bearer tokens (at least 32 bytes; trailing newlines
    /// are trimmed). Or put the secret itself in ZENML_AUTHZ_TOKEN_SECRET, never on the command
    /// line. The same on every replica, tokens survive restarts; neither set: a random key per
    /// process.
    #[arg(long, env = "ZENML_AUTHZ_TOKEN_SECRET_FILE")]
    pub token_secret_file: Option<PathBuf>,
    /// Removed (a command line is readable by every local user): given, `serve` refuses to
    /// start and says what to use instead.
    #[arg(long, hide = true)]
    pub token_secret: Option<String>,
    /// Where the shares written through the ZenML API are kept: a SQLite file (created on first
    /// start), `:memory:`, or a PostgreSQL database `postgres://user@host:port/database` shared
    /// by many replicas (migrated at start). A URL with a password belongs in
    /// --shares-db-url-file or this variable, not on the command line.
    #[arg(long, env = "ZENML_AUTHZ_SHARES_DB", default_value = "zenml-authz-shares.db")]
    pub shares_db: PathBuf,
    /// Seconds between full reloads of the shares from a PostgreSQL database, the safety net
    /// under the change notifications (a notification lost with a connection).
    #[arg(
        long,
        env = "ZENML_AUTHZ_SHARES_RESYNC_SECS",
        default_value_t = config::DEFAULT_SHARES_RESYNC_SECS,
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub shares_resync_secs: u64,
    /// Seconds a replica keeps deciding with its last known shares while the PostgreSQL share
    /// database is unreachable (a revoke made through another replica cannot reach it); after
    /// that, shares grant nothing until the database answers again (roles still decide).
    #[arg(
        long,
        env = "ZENML_AUTHZ_SHARES_MAX_STALE_SECS",
        default_value_t = config::DEFAULT_SHARES_MAX_STALE_SECS,
        value_parser = clap::value_parser!(u64).range(1..=604_800)
    )]
    pub shares_max_stale_secs: u64,
    /// `/readyz` answers 503 while the share database is unreachable (default: ready, deciding
    /// from the last known shares; `/v1/status` and the metrics say it either way).
    #[arg(long, env = "ZENML_AUTHZ_READY_REQUIRES_SHARE_STORE")]
    pub ready_requires_share_store: bool,
    /// File holding the PostgreSQL URL of the share database (it may hold a password; trailing
    /// newlines are trimmed). Replaces --shares-db.
    #[arg(long, env = "ZENML_AUTHZ_SHARES_DB_URL_FILE", conflicts_with = "shares_db")]
    pub shares_db_url_file: Option<PathBuf>,
    /// How to notice edits of the sources: file-system `events`, `poll`, or `off` (SIGHUP only).
    #[arg(long, env = "ZENML_AUTHZ_WATCH", value_enum, default_value_t = WatchMode::Events)]
    pub watch: WatchMode,
    /// Milliseconds the files must be quiet before a burst of edits is reloaded.
    #[arg(long, env = "ZENML_AUTHZ_WATCH_DEBOUNCE_MS", default_value_t = 250)]
    pub watch_debounce_ms: u64,
    /// Poll interval in milliseconds (`--watch poll`).
    #[arg(long, env = "ZENML_AUTHZ_WATCH_POLL_MS", default_value_t = 1000)]
    pub watch_poll_ms: u64,
    /// Decision tables (files or directories, as for `test`; repeatable, or comma-separated in
    /// the variable) that new policies must pass before a reload publishes them; a failing row
    /// keeps the active policies. Off when not given.
    #[arg(long, env = "ZENML_AUTHZ_RELOAD_GATE", value_delimiter = ',')]
    pub reload_gate: Vec<PathBuf>,
    /// Cache decisions (`on`/`off`).
    #[arg(long, env = "ZENML_AUTHZ_CACHE", value_enum, default_value_t = Switch::On)]
    pub cache: Switch,
    /// Most bytes of cached decisions (keys included); least useful entries are evicted first.
    #[arg(long, env = "ZENML_AUTHZ_CACHE_MAX_BYTES", default_value_t = config::DEFAULT_CACHE_MAX_BYTES)]
    pub cache_max_bytes: u64,
    /// Seconds a cached decision is kept (keys include the policy revision and share version, so
    /// this bounds memory, not staleness).
    #[arg(long, env = "ZENML_AUTHZ_CACHE_TTL", default_value_t = 300)]
    pub cache_ttl_secs: u64,
    /// Decision log (JSON lines, one per decision and share change): `stdout`, a file path
    /// (appended to), or `memory` (only the last `--decision-log-tail` records, for the
    /// console). Off when not given.
    #[arg(long, env = "ZENML_AUTHZ_DECISION_LOG")]
    pub decision_log: Option<crate::decision_log::Target>,
    /// Records the decision log may queue; when full, records are dropped and counted
    /// (`authz_decision_log_dropped_total`), never waited for.
    #[arg(long, env = "ZENML_AUTHZ_DECISION_LOG_QUEUE", default_value_t = 10_000)]
    pub decision_log_queue: usize,
    /// Records of the decision log kept in memory for the console's live tail
    /// (`GET /v1/decisions`); 0 keeps none, at most 10000.
    #[arg(
        long,
        env = "ZENML_AUTHZ_DECISION_LOG_TAIL",
        default_value_t = 200,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=10_000)
    )]
    pub decision_log_tail: usize,
    /// Log filter, `RUST_LOG` syntax (e.g. `info,zenml_authz=debug`).
    #[arg(long, env = "ZENML_AUTHZ_LOG", default_value = "info")]
    pub log: String,
    /// Log line format.
    #[arg(long, env = "ZENML_AUTHZ_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
}

impl ServeArgs {
    /// Request limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_body_bytes: self.max_body_bytes,
            max_batch_items: self.max_batch,
            body_timeout: Duration::from_secs(self.body_timeout_secs.max(1)),
            request_deadline: Duration::from_millis(self.request_deadline_ms.max(1)),
            max_request_entities: self.max_request_entities,
            max_entity_depth: self.max_entity_depth.max(1),
            max_id_bytes: self.max_id_bytes.max(1),
            max_context_bytes: self.max_context_bytes,
        }
    }

    /// Evaluation pool settings.
    pub fn pool_config(&self) -> crate::pool::PoolConfig {
        let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        crate::pool::PoolConfig {
            workers: self.evaluation_threads.unwrap_or(cpus).max(1),
            queue: self.evaluation_queue,
            deadline: Duration::from_millis(self.request_deadline_ms.max(1)),
            slice: Duration::from_micros(self.evaluation_slice_us.max(1)),
        }
    }

    /// The caller tokens from `--api-tokens-file` and `--api-token-hashes`.
    pub fn caller_tokens(&self) -> Result<crate::auth::CallerTokens, String> {
        let mut tokens = crate::auth::CallerTokens::default();
        if let Some(path) = &self.api_tokens_file {
            let text = std::fs::read_to_string(path)
                .map_err(|error| format!("--api-tokens-file `{}`: {error}", path.display()))?;
            tokens
                .add_list(&path.display().to_string(), &text)
                .map_err(|error| error.to_string())?;
        }
        if let Some(list) = &self.api_token_hashes {
            tokens
                .add_list("--api-token-hashes", list)
                .map_err(|error| error.to_string())?;
        }
        Ok(tokens)
    }

    /// ZenML API settings; the base path gets a leading `/` and loses a trailing one. The token
    /// secret comes from `ZENML_AUTHZ_TOKEN_SECRET` (read here: it has no flag) or
    /// `--token-secret-file`; a weak one is an error (`token::resolve_key`).
    pub fn zenml_config(&self) -> Result<crate::zenml::ZenmlConfig, token::SecretError> {
        if self.token_secret.is_some() {
            return Err(token::SecretError::OnCommandLine);
        }
        let env_secret = std::env::var_os(token::ENV_TOKEN_SECRET).map(OsString::into_encoded_bytes);
        let token_key = token::resolve_key(env_secret, self.token_secret_file.as_deref())?;
        let trimmed = self.zenml_base_path.trim_matches('/');
        Ok(crate::zenml::ZenmlConfig {
            base_path: format!("/{trimmed}"),
            token_ttl_secs: self.token_ttl_secs,
            token_key,
            dashboard_zenml_url: self
                .dashboard_zenml_url
                .as_deref()
                .map(|url| url.trim().trim_end_matches('/').to_owned())
                .filter(|url| !url.is_empty()),
        })
    }

    /// Where the shares are kept: `--shares-db`, or the URL in `--shares-db-url-file`.
    pub fn share_location(&self) -> Result<crate::store::Location, String> {
        let Some(path) = &self.shares_db_url_file else {
            return Ok(crate::store::Location::parse(self.shares_db.as_os_str()));
        };
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("--shares-db-url-file `{}`: {error}", path.display()))?;
        let url = text.trim_end_matches(['\n', '\r']).trim();
        if !crate::store::is_postgres_url(url) {
            return Err(format!(
                "--shares-db-url-file `{}`: not a `postgres://` or `postgresql://` url",
                path.display()
            ));
        }
        Ok(crate::store::Location::Postgres(url.to_owned()))
    }

    /// How a replica follows a shared share database.
    pub fn share_sync(&self) -> config::ShareSync {
        config::ShareSync {
            resync: Duration::from_secs(self.shares_resync_secs),
            max_stale: Duration::from_secs(self.shares_max_stale_secs),
            ready_requires_store: self.ready_requires_share_store,
        }
    }

    /// Watching settings.
    pub fn watch_config(&self) -> WatchConfig {
        WatchConfig {
            mode: self.watch,
            debounce: Duration::from_millis(self.watch_debounce_ms),
            poll_interval: Duration::from_millis(self.watch_poll_ms.max(10)),
            reload_gate: self.reload_gate.clone(),
        }
    }

    /// Cache settings.
    pub fn cache_config(&self) -> CacheConfig {
        CacheConfig {
            enabled: self.cache == Switch::On,
            max_bytes: self.cache_max_bytes,
            ttl: Duration::from_secs(self.cache_ttl_secs.max(1)),
        }
    }

    /// Listener settings.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            listen: self.listen,
            admin_listen: self.admin_listen,
            max_connections: self.max_connections.max(1),
            header_timeout: Duration::from_secs(self.header_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs.max(1)),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
        }
    }
}

/// `validate` flags.
#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// Policy sources.
    #[command(flatten)]
    pub sources: SourceArgs,
}

/// `test` flags.
#[derive(Debug, Clone, Args)]
pub struct TestArgs {
    /// Policy sources.
    #[command(flatten)]
    pub sources: SourceArgs,
    /// Decision-table files or directories of them (`*.yaml`, `*.yml`).
    #[arg(default_value = "tests/decisions")]
    pub paths: Vec<PathBuf>,
}

/// `authorize` flags.
#[derive(Debug, Clone, Args)]
#[command(
    group(clap::ArgGroup::new("asker").required(true).args(["principal", "user"])),
    after_help = "In ZenML terms: --user alice --action read --resource 'churn:pipeline/<uuid>' \
                  [--workspace production]. In Cedar terms: --principal 'ZenML::User::\"<id>\"' \
                  --action read --resource 'ZenML::Project::\"<id>\"' [--context JSON] [--entities JSON].\n\
                  Exit codes: 0 ALLOW, 1 DENY, 4 error (bad input, unknown user, workspace or \
                  project, invalid sources), 2 bad command line."
)]
pub struct AuthorizeArgs {
    /// Policy sources.
    #[command(flatten)]
    pub sources: SourceArgs,
    /// Cedar terms: the principal, `ZenML::User::"<id>"` (or `{"type": ..., "id": ...}`).
    #[arg(long, env = "ZENML_AUTHZ_PRINCIPAL", conflicts_with = "user")]
    pub principal: Option<String>,
    /// ZenML terms: the user or service account, by username, name or id.
    #[arg(long, env = "ZENML_AUTHZ_USER")]
    pub user: Option<String>,
    /// The action: a ZenML action (`read`, `update`, ...), or `ZenML::Action::"read"`.
    #[arg(long, env = "ZENML_AUTHZ_ACTION")]
    pub action: String,
    /// The resource: with `--user` a ZenML resource string `[<project>:]<type>[/<uuid>]` (the
    /// project, and the id of `project/<id>`, by name or UUID); with `--principal` an entity,
    /// `ZenML::Project::"<id>"`.
    #[arg(long, env = "ZENML_AUTHZ_RESOURCE")]
    pub resource: String,
    /// ZenML terms: the workspace asking, by name or id. Default: the workspace of the
    /// resource's project, else the directory's only workspace.
    #[arg(long, env = "ZENML_AUTHZ_WORKSPACE")]
    pub workspace: Option<String>,
    /// Cedar terms: the request context, a JSON object, or `@file`.
    #[arg(long, env = "ZENML_AUTHZ_CONTEXT")]
    pub context: Option<String>,
    /// Cedar terms: request-scoped entities, a JSON array of Cedar entities, or `@file`.
    #[arg(long, env = "ZENML_AUTHZ_ENTITIES")]
    pub entities: Option<String>,
    /// ZenML terms: a sidecar's share database (SQLite), to count the shares made through
    /// ZenML. Default: no shares.
    #[arg(long, env = "ZENML_AUTHZ_SHARES_DB")]
    pub shares_db: Option<PathBuf>,
}

/// `who-can` flags.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Exit codes: 0 answered (even when nobody may), 4 error, 2 bad command line.")]
pub struct WhoCanArgs {
    /// Policy sources.
    #[command(flatten)]
    pub sources: SourceArgs,
    /// The ZenML action, e.g. `read`.
    #[arg(long, env = "ZENML_AUTHZ_ACTION")]
    pub action: String,
    /// The ZenML resource string, `[<project>:]<type>[/<uuid>]`, the project by name or UUID.
    #[arg(long, env = "ZENML_AUTHZ_RESOURCE")]
    pub resource: String,
    /// The workspace asking, by name or id. Default: the workspace of the resource's project,
    /// else the directory's only workspace.
    #[arg(long, env = "ZENML_AUTHZ_WORKSPACE")]
    pub workspace: Option<String>,
    /// A sidecar's share database (SQLite), to count shares made through ZenML. Default: none.
    #[arg(long, env = "ZENML_AUTHZ_SHARES_DB")]
    pub shares_db: Option<PathBuf>,
}

/// `what-can` flags.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Exit codes: 0 answered, 4 error (unknown user or workspace, invalid sources), 2 bad command line."
)]
pub struct WhatCanArgs {
    /// Policy sources.
    #[command(flatten)]
    pub sources: SourceArgs,
    /// The user or service account, by username, name or id.
    #[arg(long, env = "ZENML_AUTHZ_USER")]
    pub user: String,
    /// Only this workspace (name or id). Default: every workspace of the directory.
    #[arg(long, env = "ZENML_AUTHZ_WORKSPACE")]
    pub workspace: Option<String>,
}

/// `fmt` flags.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Exit codes: 0 formatted (or, with --check, nothing to change), 1 --check found files to \
                        reformat, 4 a file cannot be read, parsed or written, 2 bad command line."
)]
pub struct FmtArgs {
    /// Policy sources (`--policies` is the default path).
    #[command(flatten)]
    pub sources: SourceArgs,
    /// Change nothing: list the files that would be reformatted, exit 1 if there are any.
    #[arg(long, env = "ZENML_AUTHZ_FMT_CHECK")]
    pub check: bool,
    /// Line width of the formatted policies.
    #[arg(long, env = "ZENML_AUTHZ_FMT_LINE_WIDTH", default_value_t = 80)]
    pub line_width: usize,
    /// Indentation width of the formatted policies.
    #[arg(long, env = "ZENML_AUTHZ_FMT_INDENT_WIDTH", default_value_t = 2)]
    pub indent_width: usize,
    /// `.cedar` files or directories searched recursively for them. Default: `--policies`.
    pub paths: Vec<PathBuf>,
}

/// `export` flags.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Writes entities.json, policies.cedar and schema.cedarschema into --out, e.g. \
                  `cedar authorize --policies OUT/policies.cedar --schema OUT/schema.cedarschema \
                  --entities OUT/entities.json --request-json request.json -v`.\n\
                  Exit codes: 0 written, 1 invalid policy sources, 4 a file cannot be written, 2 bad command line."
)]
pub struct ExportArgs {
    /// Policy sources.
    #[command(flatten)]
    pub sources: SourceArgs,
    /// The directory to write the files into (created when missing; the three files are
    /// replaced).
    #[arg(long, env = "ZENML_AUTHZ_EXPORT_OUT")]
    pub out: PathBuf,
}

/// The variable holding the ZenML API key of `zenml-projects` (it has no flag).
pub const ENV_ZENML_API_KEY: &str = "ZENML_AUTHZ_ZENML_API_KEY";

/// The largest API key file read.
const MAX_API_KEY_FILE_BYTES: u64 = 64 * 1024;

/// `zenml-projects` flags.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "The API key comes from --api-key-file or ZENML_AUTHZ_ZENML_API_KEY, never from the command \
                  line; its user must be able to read every project of the workspace (an organization \
                  admin, or a workspace admin or viewer): ZenML lists only the projects a user may read.\n\
                  Exit codes: 0 every directory project of the workspace is in ZenML with the same name \
                  and id (after --write), 1 some are not, 4 error (ZenML unreachable or refusing the key, \
                  unknown workspace, invalid sources, a rewritten file that would not load or cannot be \
                  written), 2 bad command line or no API key."
)]
pub struct ZenmlProjectsArgs {
    /// Policy sources (the directory file is the one compared and, with `--write`, rewritten).
    #[command(flatten)]
    pub sources: SourceArgs,
    /// The ZenML server, e.g. `https://zenml.example.com` (its REST API is `<url>/api/v1`).
    #[arg(long, env = "ZENML_AUTHZ_ZENML_URL")]
    pub zenml_url: String,
    /// The directory's workspace that server is, by name or id. Default: the workspace whose id
    /// is the server's id (`GET /api/v1/info`), else the directory's only workspace.
    #[arg(long, env = "ZENML_AUTHZ_WORKSPACE")]
    pub workspace: Option<String>,
    /// File holding a ZenML Pro API key (`ZENPROKEY_...`) of a directory user (trailing newlines
    /// are trimmed). Or put the key itself in ZENML_AUTHZ_ZENML_API_KEY.
    #[arg(long, env = "ZENML_AUTHZ_ZENML_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Refused (a command line is readable by every local user): says what to use instead.
    #[arg(long, hide = true)]
    pub api_key: Option<String>,
    /// Seconds each request to the ZenML server may take (connect, send and read).
    #[arg(
        long,
        env = "ZENML_AUTHZ_ZENML_TIMEOUT",
        default_value_t = crate::zenml_client::DEFAULT_TIMEOUT_SECS,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub timeout_secs: u64,
    /// Rewrite the `id:` of every directory project whose ZenML id differs (and each binding
    /// that names it by id), in place and atomically; nothing else in the file changes.
    #[arg(long, env = "ZENML_AUTHZ_ZENML_PROJECTS_WRITE")]
    pub write: bool,
}

impl ZenmlProjectsArgs {
    /// The API key, from `ZENML_AUTHZ_ZENML_API_KEY` (read here) or `--api-key-file`. `Err`
    /// carries the message and the exit code: a missing, doubled or command-line key is a usage
    /// error, an unreadable file an error.
    pub fn api_key(&self) -> Result<String, (String, i32)> {
        let usage = |message: String| Err((message, exit::USAGE));
        if self.api_key.is_some() {
            return usage(format!(
                "`--api-key` is refused: a command line is readable by every local user; put the key in a file \
                 (`--api-key-file`) or in `{ENV_ZENML_API_KEY}`"
            ));
        }
        let from_env = std::env::var(ENV_ZENML_API_KEY).ok();
        let (key, source) = match (from_env, &self.api_key_file) {
            (Some(_), Some(_)) => {
                return usage(format!(
                    "ZenML API key: set either `{ENV_ZENML_API_KEY}` or `--api-key-file`, not both"
                ));
            }
            (None, None) => {
                return usage(format!(
                    "ZenML API key: give `--api-key-file` (or `{ENV_ZENML_API_KEY}`): a ZENPROKEY_ key of a \
                     directory user who may read every project of the workspace"
                ));
            }
            (Some(key), None) => (key, ENV_ZENML_API_KEY.to_owned()),
            (None, Some(path)) => (read_key_file(path)?, format!("`{}`", path.display())),
        };
        let key = key.trim_end_matches(['\n', '\r']).to_owned();
        if key.trim().is_empty() {
            return Err((format!("ZenML API key from {source} is empty"), exit::ERROR));
        }
        Ok(key)
    }
}

fn read_key_file(path: &std::path::Path) -> Result<String, (String, i32)> {
    use std::io::Read as _;
    let failed = |message: String| {
        (
            format!("API key file `{}`: {message}", path.display()),
            exit::ERROR,
        )
    };
    let file = std::fs::File::open(path).map_err(|error| failed(error.to_string()))?;
    let mut key = String::new();
    file.take(MAX_API_KEY_FILE_BYTES + 1)
        .read_to_string(&mut key)
        .map_err(|error| failed(error.to_string()))?;
    if key.len() as u64 > MAX_API_KEY_FILE_BYTES {
        return Err(failed(format!("larger than {MAX_API_KEY_FILE_BYTES} bytes")));
    }
    Ok(key)
}

/// `verify` output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VerifyFormat {
    /// One line per invariant (and a counterexample under a refuted one).
    Text,
    /// One JSON document.
    Json,
}

/// `verify` flags.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Runs the cvc5 SMT solver: `$CVC5`, else `cvc5` on the PATH (Debian: `apt-get install cvc5`; \
                  scripts/ensure-cvc5.sh). Exit codes: 0 every invariant proved, 1 one refuted (counterexample \
                  printed), 5 none refuted but one unknown (the solver gave no answer), 4 invalid sources or \
                  invariants, 2 bad command line."
)]
pub struct VerifyArgs {
    /// Policy sources.
    #[command(flatten)]
    pub sources: SourceArgs,
    /// The invariants: a `.cedar` file, or a directory searched recursively for them.
    #[arg(long, env = "ZENML_AUTHZ_INVARIANTS", default_value = "invariants")]
    pub invariants: PathBuf,
    /// Output format.
    #[arg(long, env = "ZENML_AUTHZ_VERIFY_FORMAT", value_enum, default_value_t = VerifyFormat::Text)]
    pub format: VerifyFormat,
    /// The solver's time limit for one query, in milliseconds; past it the invariant is unknown.
    #[arg(long, env = "ZENML_AUTHZ_VERIFY_TIME_LIMIT_MS", default_value_t = 60_000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub time_limit_ms: u64,
    /// Solver processes running at once (each one thread).
    #[arg(long, env = "ZENML_AUTHZ_VERIFY_JOBS", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
}

/// `impact` output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImpactFormat {
    /// A summary line, then a table per principal and scope (for a pull-request comment).
    Markdown,
    /// Every change, for machines.
    Json,
}

/// `impact` flags.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "--base is a directory laid out like the current one (the same relative --policies, --schemas \
                  and --directory under it), else a git revision of the repository the sources are in, \
                  e.g. `zenml-authz impact --base origin/main`.\n\
                  The symbolic comparison runs cvc5 (`$CVC5`, else `cvc5` on the PATH) in each request \
                  environment an edited policy can match; `--no-symbolic` skips it.\n\
                  Exit codes: 0 no decision changes and the policy sets are equivalent, 1 some decisions \
                  change or the policy sets differ for some possible request, 5 nothing changes but the solver \
                  gave no answer somewhere (its time limit, no cvc5), 4 error (invalid sources on either side, \
                  said which; git cannot extract the revision), 2 bad command line or a --base that is neither \
                  a directory nor a revision."
)]
pub struct ImpactArgs {
    /// Policy sources (the current side).
    #[command(flatten)]
    pub sources: SourceArgs,
    /// What to compare with: a directory, or a git revision (`HEAD~1`, `origin/main`, a commit).
    #[arg(long, env = "ZENML_AUTHZ_IMPACT_BASE")]
    pub base: String,
    /// Output format.
    #[arg(long, env = "ZENML_AUTHZ_IMPACT_FORMAT", value_enum, default_value_t = ImpactFormat::Markdown)]
    pub format: ImpactFormat,
    /// Most changed cells listed in Markdown (then `… and N more`); JSON lists every one.
    #[arg(long, env = "ZENML_AUTHZ_IMPACT_MAX_ROWS", default_value_t = 200)]
    pub max_rows: usize,
    /// Skip the symbolic comparison (for every request the schema allows, are the policy sets
    /// equivalent?), which needs cvc5; only the directories' concrete decisions are compared.
    #[arg(long, env = "ZENML_AUTHZ_IMPACT_NO_SYMBOLIC")]
    pub no_symbolic: bool,
    /// The solver's time limit for one query, in milliseconds; past it the environment is unknown.
    #[arg(long, env = "ZENML_AUTHZ_IMPACT_TIME_LIMIT_MS", default_value_t = 60_000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub time_limit_ms: u64,
    /// Solver processes running at once (each one thread).
    #[arg(long, env = "ZENML_AUTHZ_IMPACT_JOBS", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
}
