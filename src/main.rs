//! The `zenml-authz` binary: parse the command line, then serve, validate, test or run an
//! authoring command (`authorize`, `who-can`, `what-can`, `fmt`, `export`, `zenml-projects`, `impact`).

use std::process::ExitCode;

use clap::Parser;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use zenml_authz::auth::CallerTokens;
use zenml_authz::cache::DecisionCache;
use zenml_authz::cli::{Cli, Command, LogFormat, ServeArgs, exit};
use zenml_authz::config::ServerConfig;
use zenml_authz::decision_log::DecisionLog;
use zenml_authz::metrics::Metrics;
use zenml_authz::snapshot::{self, Loader, Snapshot, Sources};
use zenml_authz::state::Services;
use zenml_authz::store::Shares;
use zenml_authz::zenml::ZenmlConfig;
use zenml_authz::{AppState, authoring, server, table, watch};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Validate(args) => validate(&args.sources.sources()),
        Command::Test(args) => test(&args.sources.sources(), &args.paths),
        Command::Authorize(args) => authoring::authorize(&args).emit(),
        Command::WhoCan(args) => authoring::who_can(&args).emit(),
        Command::WhatCan(args) => authoring::what_can(&args).emit(),
        Command::Fmt(args) => authoring::fmt(&args).emit(),
        Command::Export(args) => authoring::export(&args).emit(),
        Command::HashToken(args) => hash_token(&args.name),
        Command::ZenmlProjects(args) => authoring::zenml_projects(&args).emit(),
        Command::Verify(args) => authoring::verify(&args).emit(),
        Command::Impact(args) => authoring::impact(&args).emit(),
    };
    ExitCode::from(code as u8)
}

fn validate(sources: &Sources) -> i32 {
    match snapshot::load(sources) {
        Ok(snapshot) => {
            // Warnings go to stderr with the errors; stdout keeps the verdict.
            for warning in snapshot.warnings.iter().chain(&authoring::lint(&snapshot)) {
                eprintln!("warning: {warning}");
            }
            let counts = snapshot.counts();
            println!(
                "valid: {} policies, {} templates, {} entities (revision {})",
                counts.policies, counts.templates, counts.entities, snapshot.revision
            );
            exit::OK
        }
        Err(errors) => {
            for error in &errors {
                eprintln!("error: {error}");
            }
            eprintln!("invalid: {} error(s)", errors.len());
            exit::INVALID
        }
    }
}

fn test(sources: &Sources, paths: &[std::path::PathBuf]) -> i32 {
    let snapshot = match snapshot::load(sources) {
        Ok(snapshot) => snapshot,
        Err(errors) => {
            for error in &errors {
                eprintln!("error: {error}");
            }
            return exit::INVALID;
        }
    };
    let report = table::run(&snapshot, paths);
    for failure in &report.failures {
        println!("FAIL {failure}");
    }
    for error in &report.errors {
        println!("ERROR {error}");
    }
    println!(
        "{} passed, {} failed",
        report.passed,
        report.failures.len() + report.errors.len()
    );
    if report.failures.is_empty() && report.errors.is_empty() {
        exit::OK
    } else {
        exit::INVALID
    }
}

/// `hash-token`: the token from standard input, as a line of `--api-tokens-file`.
fn hash_token(name: &str) -> i32 {
    let mut token = String::new();
    if let Err(error) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut token) {
        eprintln!("error: cannot read the token from standard input: {error}");
        return exit::ERROR;
    }
    match zenml_authz::auth::hash_line(name, token.trim()) {
        Ok(line) => {
            println!("{line}");
            exit::OK
        }
        Err(message) => {
            eprintln!("error: {message}");
            exit::ERROR
        }
    }
}

/// Refuses to serve the Cedar API, status or metrics without caller tokens on an address other
/// hosts can reach, unless told to; says at start how callers are authenticated.
fn check_exposure(args: &ServeArgs, tokens: &CallerTokens) -> Result<(), String> {
    if !tokens.is_empty() {
        tracing::info!(
            tokens = tokens.len(),
            "caller authentication: bearer tokens for the Cedar API, status and metrics"
        );
        return Ok(());
    }
    if args.listen.ip().is_loopback() {
        tracing::info!("caller authentication: none (the main address is loopback only)");
        return Ok(());
    }
    if args.allow_unauthenticated {
        tracing::warn!(listen = %args.listen, "caller authentication: NONE on a non-loopback address (--allow-unauthenticated): anyone who reaches it may use the Cedar API and read status and metrics");
        return Ok(());
    }
    Err(format!(
        "refusing to listen on {} without caller tokens: anyone who reaches it could use the Cedar API and read status and metrics; \
         configure --api-tokens-file (or ZENML_AUTHZ_API_TOKEN_HASHES), listen on a loopback address, or pass --allow-unauthenticated",
        args.listen
    ))
}

fn serve(args: ServeArgs) -> i32 {
    let startup = match Startup::new(&args) {
        Ok(startup) => startup,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return exit::RUNTIME;
        }
    };
    runtime.block_on(run_server(args, startup))
}

/// What `serve` settles before it starts the runtime: every setting checked, the sources
/// loaded (the first snapshot), the share store opened. Each failure is reported and mapped to
/// its exit code.
struct Startup {
    zenml: ZenmlConfig,
    caller_tokens: CallerTokens,
    sources: Sources,
    loader: Loader,
    loads: watch::LoadThread,
    snapshot: Snapshot,
    shares: Shares,
}

impl Startup {
    fn new(args: &ServeArgs) -> Result<Startup, i32> {
        let usage = |message: &dyn std::fmt::Display| {
            eprintln!("error: {message}");
            exit::USAGE
        };
        // A weak or misplaced token secret is a bad setting: refused before anything is loaded.
        let zenml = args.zenml_config().map_err(|error| usage(&error))?;
        init_tracing(args);
        let caller_tokens = args.caller_tokens().map_err(|message| usage(&message))?;
        check_exposure(args, &caller_tokens).map_err(|message| usage(&message))?;
        let sources = args.sources.sources();
        // Every load, this first one too, runs on one thread (`watch::LoadThread`).
        let loads = watch::LoadThread::start().map_err(|error| {
            eprintln!("error: cannot start the load thread: {error}");
            exit::RUNTIME
        })?;
        let first = sources.clone();
        let (loader, loaded) = loads
            .submit(move || {
                let mut loader = Loader::new();
                let loaded = loader.load(&first);
                (loader, loaded)
            })
            .blocking_recv()
            .map_err(|_| {
                eprintln!("error: the first load failed");
                exit::RUNTIME
            })?;
        let snapshot = loaded.map_err(|errors| {
            for error in &errors {
                eprintln!("error: {error}");
            }
            tracing::error!(errors = errors.len(), "invalid policy sources; not starting");
            exit::INVALID
        })?;
        for warning in &snapshot.warnings {
            tracing::warn!(%warning, "policy validation warning");
        }
        let location = args.share_location().map_err(|message| usage(&message))?;
        let shares = location.open().and_then(Shares::open).map_err(|error| {
            eprintln!("error: {location}: {error}");
            exit::RUNTIME
        })?;
        Ok(Startup {
            zenml,
            caller_tokens,
            sources,
            loader,
            loads,
            snapshot,
            shares,
        })
    }
}

/// Binds the listeners, builds the services, reports readiness, then serves and reloads until a
/// shutdown signal.
async fn run_server(args: ServeArgs, startup: Startup) -> i32 {
    let config = args.server_config();
    let (listener, admin) = match bind(&config).await {
        Ok(listeners) => listeners,
        Err(message) => {
            eprintln!("error: {message}");
            return exit::RUNTIME;
        }
    };
    let services = match services(&args, startup.zenml, startup.shares, startup.caller_tokens) {
        Ok(services) => services,
        Err(message) => {
            eprintln!("error: {message}");
            return exit::RUNTIME;
        }
    };
    // Signal listeners before readiness is reported (`announce`, `/readyz`): a SIGHUP or SIGTERM
    // sent to a ready server never meets the default action (the process ends).
    let shutdown = server::shutdown_signal();
    let hangup = watch::hangup_signal();
    announce(&listener, admin.as_ref(), &startup.snapshot);
    let state = AppState::new(startup.snapshot, services);
    // Removals made while the sidecar was stopped: the store remembers who was a member.
    let settling = state.clone();
    if let Err(error) =
        tokio::task::spawn_blocking(move || settling.settle_memberships(&settling.snapshot())).await
    {
        eprintln!("error: settling memberships: {error}");
        return exit::RUNTIME;
    }
    // One shutdown signal for the server and the reload actor.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    tokio::spawn(watch::run(
        state.clone(),
        startup.sources,
        startup.loader,
        startup.loads,
        args.watch_config(),
        hangup,
        until_stopped(stopped.clone()),
    ));
    // Shares written by the other sidecars on a shared database.
    tokio::spawn(watch::follow_shares(
        state.clone(),
        until_stopped(stopped.clone()),
    ));
    server::run(listener, admin, state, &config, until_stopped(stopped)).await;
    exit::OK
}

/// The main listener and, with `--admin-listen`, the admin one.
async fn bind(config: &ServerConfig) -> Result<(TcpListener, Option<TcpListener>), String> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", config.listen))?;
    let admin = match config.admin_listen {
        Some(address) => Some(
            TcpListener::bind(address)
                .await
                .map_err(|error| format!("cannot listen on {address} (--admin-listen): {error}"))?,
        ),
        None => None,
    };
    Ok((listener, admin))
}

/// Reports readiness: the log line, and for scripts and tests that start the server on port 0 a
/// `listening on` line on stdout (the admin listener's second).
fn announce(listener: &TcpListener, admin: Option<&TcpListener>, snapshot: &Snapshot) {
    let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let counts = snapshot.counts();
    tracing::info!(%address, revision = %snapshot.revision, policies = counts.policies, entities = counts.entities, "zenml-authz listening");
    println!("listening on http://{address}");
    if let Some(admin) = admin {
        let admin = admin.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(address = %admin, "admin listener (health, readiness, metrics)");
        println!("admin listening on http://{admin}");
    }
}

/// Cache, metrics, decision log and the rest of what `serve` runs with.
fn services(
    args: &ServeArgs,
    zenml: ZenmlConfig,
    shares: Shares,
    caller_tokens: zenml_authz::auth::CallerTokens,
) -> Result<Services, String> {
    let metrics = Metrics::new().map_err(|error| format!("metrics: {error}"))?;
    let decision_log = match &args.decision_log {
        Some(target) => DecisionLog::start(
            target,
            args.decision_log_queue,
            args.decision_log_tail,
            metrics.clone(),
        )
        .map_err(|error| format!("decision log {target:?}: {error}"))?,
        None => DecisionLog::disabled(metrics.clone()),
    };
    Ok(Services {
        limits: args.limits(),
        zenml,
        shares,
        cache: DecisionCache::new(args.cache_config()),
        metrics,
        decision_log,
        pool: zenml_authz::pool::EvalPool::new(args.pool_config()),
        caller_tokens,
        admin_separate: args.admin_listen.is_some(),
        share_sync: args.share_sync(),
    })
}

fn init_tracing(args: &ServeArgs) {
    let filter = EnvFilter::try_new(&args.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match args.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
