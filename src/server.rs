//! The accept loop: a bounded number of HTTP/1.1 connections, `TCP_NODELAY`, header timeouts,
//! and a graceful drain with a deadline at shutdown.

use std::future::Future;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::ServerConfig;
use crate::http::Listener;
use crate::state::AppState;

/// Most connections the admin listener serves at once (probes and a scraper need few; a flood
/// of the main address never takes these).
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Serves `listener` (and `admin`, the admin listener, if any) until `shutdown` completes, then
/// drains for at most `shutdown_grace`.
pub async fn run(
    listener: TcpListener,
    admin: Option<TcpListener>,
    state: AppState,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let main_loop = accept(
        &listener,
        Listener::Main,
        config.max_connections,
        &state,
        config,
        &graceful,
        stopped.clone(),
    );
    let admin_loop = async {
        if let Some(admin) = &admin {
            accept(
                admin,
                Listener::Admin,
                ADMIN_MAX_CONNECTIONS,
                &state,
                config,
                &graceful,
                stopped,
            )
            .await;
        }
    };
    let signal = async {
        shutdown.await;
        let _ = stop.send(true);
    };
    tokio::join!(main_loop, admin_loop, signal);
    state.start_draining();
    tracing::info!("shutting down: draining in-flight requests");
    if tokio::time::timeout(config.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?config.shutdown_grace, "shutdown grace elapsed with requests still in flight");
    }
}

/// One listener's accept loop, until `stopped` turns true.
async fn accept(
    listener: &TcpListener,
    kind: Listener,
    max_connections: usize,
    state: &AppState,
    config: &ServerConfig,
    graceful: &GracefulShutdown,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    // One permit per connection: at the limit, new connections wait in the kernel's backlog
    // instead of exhausting file descriptors.
    let connections = Arc::new(Semaphore::new(max_connections));
    let stop = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut stop => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of fds or similar: back off briefly rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // ZenML writes a request and waits for the answer: never let Nagle hold it back.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let service_state = state.clone();
        let service = service_fn(move |request| crate::http::handle(service_state.clone(), kind, request));
        // The header timeout also bounds an idle keep-alive connection (hyper starts it when it
        // waits for a request); the body has its own (`read_body`).
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
}

/// Installs the SIGINT and SIGTERM listeners now (within the runtime; `serve` calls it before it
/// reports readiness, so a signal sent to a ready server is never the default action); the
/// future completes on either.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &'static str| {
            signal(kind)
                .map_err(|error| tracing::warn!(%error, "cannot listen for {name}"))
                .ok()
        };
        let interrupt = listen(SignalKind::interrupt(), "SIGINT");
        let terminate = listen(SignalKind::terminate(), "SIGTERM");
        async move {
            tokio::select! {
                () = received(interrupt) => {},
                () = received(terminate) => {},
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Completes on the first signal `signal` listens for; never without a listener.
#[cfg(unix)]
async fn received(signal: Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(mut signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}
