//! The accept loop: a bounded number of HTTP/1.1 connections, `TCP_NODELAY`, header and idle
//! timeouts (one lazily reset timer per connection), and a graceful drain with a deadline at
//! shutdown.

use std::future::Future;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
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
        // `Paced` keeps both connection deadlines: the header timeout of a request head and the
        // idle timeout between requests (hyper's own header timer, which bounded the idle wait,
        // re-registered a timer for every request).
        let connection = http1::Builder::new()
            .header_read_timeout(None)
            .keep_alive(true)
            .serve_connection(
                TokioIo::new(Paced::new(
                    stream,
                    config.header_timeout,
                    config.idle_timeout,
                    serving,
                )),
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

/// A connection's byte stream with its deadlines: a new connection must deliver a whole request
/// head within the header timeout, and so must each later request from its first byte; between
/// a response and the next request's first byte the connection may stay idle for the idle
/// timeout. While a request is served (from hyper handing it to the service, which means its
/// head is in, until the response begins) no deadline applies here: the body timeout and the
/// request deadline bound it. So the idle timeout can be long (a server that closes an idle
/// connection races a client reusing it, and ZenML over `http://` does not retry) while a
/// client that trickles its headers is still cut quickly.
///
/// One timer serves both deadlines, reset lazily: it is registered at or before the deadline
/// that applies (`due`), and moved only when it fires early or `due` moves before it, so a
/// request costs two clock reads, not a timer registration.
struct Paced<S> {
    inner: S,
    header_timeout: std::time::Duration,
    idle_timeout: std::time::Duration,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// When the timer fires; never after `due` while a deadline applies.
    registered: tokio::time::Instant,
    /// Whether the timer has this task's waker (taken when it fires, needed again after a reset).
    watched: bool,
    /// When the connection is cut, unless a request is being served.
    due: tokio::time::Instant,
    phase: Phase,
    /// Set by the service when hyper hands it a request, cleared when the response begins.
    serving: Arc<std::sync::atomic::AtomicBool>,
}

/// Which of the connection's deadlines applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A request head is being received: the header timeout.
    Head,
    /// A request is being served: none here.
    Serving,
    /// Between a response and the next request's first byte: the idle timeout.
    Idle,
}

impl<S> Paced<S> {
    fn new(
        inner: S,
        header_timeout: std::time::Duration,
        idle_timeout: std::time::Duration,
        serving: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        let due = tokio::time::Instant::now() + header_timeout;
        Self {
            inner,
            header_timeout,
            idle_timeout,
            timer: Box::pin(tokio::time::sleep_until(due)),
            registered: due,
            watched: false,
            due,
            phase: Phase::Head,
            serving,
        }
    }

    /// A new deadline: the timer moves only if it would fire after it.
    fn set_due(&mut self, due: tokio::time::Instant) {
        self.due = due;
        if due < self.registered {
            self.move_timer(due);
        }
    }

    /// The timer set to fire at `at`; it needs this task's waker again.
    fn move_timer(&mut self, at: tokio::time::Instant) {
        self.timer.as_mut().reset(at);
        self.registered = at;
        self.watched = false;
    }

    /// Whether the deadline passed; keeps the timer armed (and watched) for it otherwise, so
    /// a reader waiting for more bytes is woken by it.
    fn overdue(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        loop {
            if self.timer.is_elapsed() {
                if tokio::time::Instant::now() >= self.due {
                    return true;
                }
                // Fired early, for an earlier deadline: re-armed for this one.
                self.move_timer(self.due);
            }
            if self.watched {
                return false;
            }
            self.watched = true;
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            // It fired as it was registered (its instant had passed): seen elapsed above.
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
            self.phase = Phase::Serving;
        } else if self.phase == Phase::Serving {
            // The response began: idle until the next request's first byte.
            self.phase = Phase::Idle;
            let due = tokio::time::Instant::now() + self.idle_timeout;
            self.set_due(due);
        }
        if self.phase != Phase::Serving && self.overdue(cx) {
            let what = match self.phase {
                Phase::Idle => "the connection was idle for longer than the idle timeout",
                _ => "request headers did not arrive within the header timeout",
            };
            return std::task::Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, what)));
        }
        let before = buf.filled().len();
        let read = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = read
            && buf.filled().len() > before
            && self.phase == Phase::Idle
        {
            // A new request's first byte.
            self.phase = Phase::Head;
            let due = tokio::time::Instant::now() + self.header_timeout;
            self.set_due(due);
            // The reader may wait for more: the deadline must be able to wake it.
            let _ = self.overdue(cx);
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
