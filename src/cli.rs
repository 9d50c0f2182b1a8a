//! The command line: `serve`, `validate` and `test`. Every flag has a `ZENML_AUTHZ_*`
//! environment variable; flags win over variables, variables over defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cache::CacheConfig;
use crate::config::{self, Limits, ServerConfig};
use crate::policy::Sources;
use crate::watch::{WatchConfig, WatchMode};

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
    Serve(ServeArgs),
    /// Check schemas, policies and directory; print every error; exit 0 when valid.
    Validate(ValidateArgs),
    /// Run decision-table files against the policies; print failures and `N passed, M failed`.
    Test(TestArgs),
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
    /// Seconds a client has to send request headers.
    #[arg(long, env = "ZENML_AUTHZ_HEADER_TIMEOUT", default_value_t = config::DEFAULT_HEADER_TIMEOUT_SECS)]
    pub header_timeout_secs: u64,
    /// Seconds in-flight requests get to finish at shutdown (SIGTERM, Ctrl-C).
    #[arg(long, env = "ZENML_AUTHZ_SHUTDOWN_GRACE", default_value_t = config::DEFAULT_SHUTDOWN_GRACE_SECS)]
    pub shutdown_grace_secs: u64,
    /// Path prefix of the ZenML API (`ZENML_SERVER_PRO_API_URL=http://<listen><this>`).
    #[arg(long, env = "ZENML_AUTHZ_ZENML_BASE_PATH", default_value = "/zenml")]
    pub zenml_base_path: String,
    /// Lifetime of issued bearer tokens, seconds (ZenML renews 5 minutes before expiry).
    #[arg(long, env = "ZENML_AUTHZ_TOKEN_TTL", default_value_t = 3600)]
    pub token_ttl_secs: u64,
    /// Secret that signs bearer tokens; set it (the same on every replica) for tokens to survive
    /// restarts. Default: a random key per process.
    #[arg(long, env = "ZENML_AUTHZ_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
    /// SQLite file of shares written through the ZenML API (created on first start), or
    /// `:memory:` to keep them in memory only.
    #[arg(long, env = "ZENML_AUTHZ_SHARES_DB", default_value = "zenml-authz-shares.db")]
    pub shares_db: PathBuf,
    /// How to notice edits of the sources: file-system `events`, `poll`, or `off` (SIGHUP only).
    #[arg(long, env = "ZENML_AUTHZ_WATCH", value_enum, default_value_t = WatchMode::Events)]
    pub watch: WatchMode,
    /// Milliseconds the files must be quiet before a burst of edits is reloaded.
    #[arg(long, env = "ZENML_AUTHZ_WATCH_DEBOUNCE_MS", default_value_t = 250)]
    pub watch_debounce_ms: u64,
    /// Poll interval in milliseconds (`--watch poll`).
    #[arg(long, env = "ZENML_AUTHZ_WATCH_POLL_MS", default_value_t = 1000)]
    pub watch_poll_ms: u64,
    /// Cache decisions (`on`/`off`).
    #[arg(long, env = "ZENML_AUTHZ_CACHE", value_enum, default_value_t = Switch::On)]
    pub cache: Switch,
    /// Most cached decisions.
    #[arg(long, env = "ZENML_AUTHZ_CACHE_MAX_ENTRIES", default_value_t = 100_000)]
    pub cache_max_entries: u64,
    /// Seconds a cached decision is kept (keys include the policy revision and share version, so
    /// this bounds memory, not staleness).
    #[arg(long, env = "ZENML_AUTHZ_CACHE_TTL", default_value_t = 300)]
    pub cache_ttl_secs: u64,
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
        }
    }

    /// ZenML API settings; the base path gets a leading `/` and loses a trailing one.
    pub fn zenml_config(&self) -> crate::zenml::api::ZenmlConfig {
        let trimmed = self.zenml_base_path.trim_matches('/');
        crate::zenml::api::ZenmlConfig {
            base_path: format!("/{trimmed}"),
            token_ttl_secs: self.token_ttl_secs.max(301),
            token_key: match &self.token_secret {
                Some(secret) => crate::zenml::token::TokenKey::from_secret(secret),
                None => crate::zenml::token::TokenKey::random(),
            },
        }
    }

    /// Watching settings.
    pub fn watch_config(&self) -> WatchConfig {
        WatchConfig {
            mode: self.watch,
            debounce: Duration::from_millis(self.watch_debounce_ms),
            poll_interval: Duration::from_millis(self.watch_poll_ms.max(10)),
        }
    }

    /// Cache settings.
    pub fn cache_config(&self) -> CacheConfig {
        CacheConfig {
            enabled: self.cache == Switch::On,
            max_entries: self.cache_max_entries,
            ttl: Duration::from_secs(self.cache_ttl_secs.max(1)),
        }
    }

    /// Listener settings.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            listen: self.listen,
            max_connections: self.max_connections.max(1),
            header_timeout: Duration::from_secs(self.header_timeout_secs.max(1)),
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
