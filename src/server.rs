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
        let serving = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let served = serving.clone();
        let service = service_fn(move |request| {
            served.store(true, std::sync::atomic::Ordering::Release);
            crate::http::handle(service_state.clone(), kind, request)
        });
        // hyper's header timer runs from the moment it waits for a request, so it bounds an idle
        // keep-alive connection: the long idle timeout. `Paced` bounds the headers themselves;
        // the body has its own timeout (`read_body`).
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(config.idle_timeout.max(config.header_timeout))
            .keep_alive(true)
            .serve_connection(
                TokioIo::new(Paced::new(stream, config.header_timeout, serving)),
                service,
            );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
}

/// A connection's byte stream with the header timeout: a new connection must deliver a whole
/// request head within it, and so must each later request from its first byte. While a request
/// is served (from hyper handing it to the service, which means its head is in, until the
/// response begins) and between requests, no deadline applies here: the body timeout and the
/// request deadline bound the first, hyper's idle timeout the second. So the idle timeout can be
/// long (a server that closes an idle connection races a client reusing it, and ZenML over
/// `http://` does not retry) while a client that trickles its headers is still cut quickly.
struct Paced<S> {
    inner: S,
    header_timeout: std::time::Duration,
    /// The deadline of the request head being received (one timer, reset per request).
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// Whether a head is being received (the deadline applies).
    armed: bool,
    /// Set by the service when hyper hands it a request, cleared when the response begins.
    serving: Arc<std::sync::atomic::AtomicBool>,
}

impl<S> Paced<S> {
    fn new(
        inner: S,
        header_timeout: std::time::Duration,
        serving: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        Self {
            inner,
            header_timeout,
            deadline: Box::pin(tokio::time::sleep(header_timeout)),
            armed: true,
            serving,
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Paced<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let serving = self.serving.load(std::sync::atomic::Ordering::Acquire);
        if serving {
            // The head is in: the body timeout and the request deadline take over.
            self.armed = false;
        }
        if self.armed && self.deadline.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request headers did not arrive within the header timeout",
            )));
        }
        let before = buf.filled().len();
        let read = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = read
            && buf.filled().len() > before
            && !serving
            && !self.armed
        {
            // A new request's first byte.
            let at = tokio::time::Instant::now() + self.header_timeout;
            self.deadline.as_mut().reset(at);
            self.armed = true;
            // Registers the waker: the deadline must wake a reader that waits for more.
            let _ = self.deadline.as_mut().poll(cx);
        }
        read
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Paced<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bytes: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        // A response begins: the next bytes read are a new request's.
        self.serving.store(false, std::sync::atomic::Ordering::Release);
        std::pin::Pin::new(&mut self.inner).poll_write(cx, bytes)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.serving.store(false, std::sync::atomic::Ordering::Release);
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
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
