//! The evaluation pool: admission for work whose cost a caller controls, and where it runs.
//!
//! A Cedar request with request-scoped entities, a batch, or a long ZenML page costs time in
//! proportion to what the caller sent (entity parsing, Cedar's transitive closure, one
//! evaluation per item). Run on the async workers unchecked, a few such requests would stall
//! every connection, `/healthz` included. So every such job is admitted here first: at most
//! `workers` run at once (a semaphore), at most `queue` more wait; beyond that the request is
//! shed at once (`503` with `Retry-After`), never queued without bound. Every job has a
//! deadline: the caller gets `503` when it passes, whether the job was still waiting or
//! running.
//!
//! Where an admitted job runs depends on the shape of its cost:
//!
//! * [`EvalPool::run`]: on tokio's blocking threads, for work with a large step that cannot be
//!   split (parsing many request-scoped entities, their closure). The job is told to stop
//!   ([`Deadline::expired`], checked between items).
//! * [`EvalPool::run_sliced`]: on the caller's own task, in slices of at most
//!   [`PoolConfig::slice`] (`--evaluation-slice-us`, default [`DEFAULT_SLICE`]) between
//!   which it yields to the other tasks ([`Pace::go_on`], awaited between items), for work made
//!   of many small items (a batch of small requests, a long ZenML page). A hand-off to a
//!   blocking thread and back costs more wall-clock time than such a batch of 20 (measured:
//!   41–47 % of the throughput, BENCHMARKS.md "The security issue's request path"). The price:
//!   under a flood of such batches another connection waits for the slices ahead of it (a
//!   `/healthz` at one connection: p50 ~110 µs with 50 µs slices, ~200 µs with 100 µs, ~55 µs
//!   when the OS preempted blocking threads for it); never for a whole job.
//!
//! A single cheap decision (no or a few small request-scoped entities) is answered inline
//! without admission: it costs a few microseconds, less than the admission.
//!
//! Architecture Invariant: a job that did not finish before its deadline answers nothing: its
//! result is dropped and the caller is refused (fail closed), never given a partial allow.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The longest a sliced job runs by default before it lets the other tasks of its worker run.
pub const DEFAULT_SLICE: Duration = Duration::from_micros(crate::config::DEFAULT_EVALUATION_SLICE_US);

/// Why a job was not answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Every evaluation thread is busy and the queue is full.
    #[error("the evaluation queue is full ({0} waiting); retry later")]
    Overloaded(usize),
    /// The deadline passed before the job finished.
    #[error("the request took longer than its deadline of {0:?}")]
    Deadline(Duration),
    /// The job panicked or was cancelled.
    #[error("the evaluation failed: {0}")]
    Failed(String),
}

/// Pool settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Jobs running at once.
    pub workers: usize,
    /// Jobs waiting at most.
    pub queue: usize,
    /// Time from submission to answer.
    pub deadline: Duration,
    /// The longest a sliced job runs before it yields.
    pub slice: Duration,
}

/// The pool; one per server.
#[derive(Debug)]
pub struct EvalPool {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    config: PoolConfig,
}

/// A job's deadline, as the job sees it; `None` parts never expire.
#[derive(Debug, Clone)]
pub struct Deadline {
    at: Option<std::time::Instant>,
    abandoned: Option<Arc<AtomicBool>>,
}

// === impl Deadline ===

impl Deadline {
    /// Whether the job should stop: its deadline passed or its caller has gone.
    pub fn expired(&self) -> bool {
        self.abandoned
            .as_ref()
            .is_some_and(|abandoned| abandoned.load(Ordering::Relaxed))
            || self.at.is_some_and(|at| std::time::Instant::now() >= at)
    }

    /// A deadline that never expires (work answered inline: no allocation, no clock read).
    pub const fn never() -> Self {
        Self {
            at: None,
            abandoned: None,
        }
    }
}

/// How a job made of items goes on between them: whether its deadline passed, and (sliced on an
/// async worker) when to yield.
#[derive(Debug)]
pub struct Pace {
    deadline: Deadline,
    /// Sliced: when the current slice began, and how long a slice lasts.
    slice: Option<(std::time::Instant, Duration)>,
}

// === impl Pace ===

impl Pace {
    /// A job on a blocking thread: it stops at `deadline`, never yields.
    pub fn blocking(deadline: &Deadline) -> Self {
        Self {
            deadline: deadline.clone(),
            slice: None,
        }
    }

    /// Work small enough to answer inline: no deadline, no yields.
    pub const fn inline() -> Self {
        Self {
            deadline: Deadline::never(),
            slice: None,
        }
    }

    fn sliced(until: std::time::Instant, length: Duration) -> Self {
        Self {
            deadline: Deadline {
                at: Some(until),
                abandoned: None,
            },
            slice: Some((std::time::Instant::now(), length)),
        }
    }

    /// Before the next item: `false` when the deadline passed (the job must stop and answer
    /// nothing); on an async worker, yields first when the current slice is used up.
    pub async fn go_on(&mut self) -> bool {
        if let Some((began, length)) = self.slice
            && began.elapsed() >= length
        {
            tokio::task::yield_now().await;
            self.slice = Some((std::time::Instant::now(), length));
        }
        !self.deadline.expired()
    }
}

/// Runs a job written as a future to its end on the current thread, for a job on a blocking
/// thread whose [`Pace`] never yields: `None` if it did not finish in one poll (it awaited
/// something else, a bug the caller answers as an internal error).
pub fn run_to_end<F: Future>(job: F) -> Option<F::Output> {
    let mut job = std::pin::pin!(job);
    match job
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        std::task::Poll::Ready(answer) => Some(answer),
        std::task::Poll::Pending => None,
    }
}

// === impl EvalPool ===

impl EvalPool {
    /// A pool with `config` (at least one worker).
    pub fn new(config: PoolConfig) -> Self {
        let workers = config.workers.max(1);
        Self {
            permits: Arc::new(Semaphore::new(workers)),
            waiting: AtomicUsize::new(0),
            config: PoolConfig { workers, ..config },
        }
    }

    /// The settings.
    pub fn config(&self) -> PoolConfig {
        self.config
    }

    /// Jobs waiting for a thread now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.config.workers - self.permits.available_permits()
    }

    /// A permit to run, waiting at most until `until` (refused at once when the queue is full).
    async fn admit(&self, until: Instant) -> Result<OwnedSemaphorePermit, PoolError> {
        let waiting = Waiting::enter(&self.waiting, self.config.queue)?;
        let permit = tokio::time::timeout_at(until, self.permits.clone().acquire_owned()).await;
        drop(waiting);
        match permit {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(closed)) => Err(PoolError::Failed(closed.to_string())),
            Err(_) => Err(PoolError::Deadline(self.config.deadline)),
        }
    }

    /// Runs `job` on the caller's task once admitted, in slices (it awaits [`Pace::go_on`]
    /// between items). A job that finds its deadline passed stops and refuses: the answer it
    /// returns then is its own error, never a partial one.
    pub async fn run_sliced<T, F, J>(&self, job: F) -> Result<T, PoolError>
    where
        F: FnOnce(Pace) -> J,
        J: Future<Output = T>,
    {
        let until = Instant::now() + self.config.deadline;
        let _permit = self.admit(until).await?;
        Ok(job(Pace::sliced(until.into_std(), self.config.slice)).await)
    }

    /// Runs `job` on a blocking thread when one is free, within the deadline.
    pub async fn run<T, F>(&self, job: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce(&Deadline) -> T + Send + 'static,
    {
        let until = Instant::now() + self.config.deadline;
        let permit = self.admit(until).await?;
        let abandoned = Arc::new(AtomicBool::new(false));
        let deadline = Deadline {
            at: Some(until.into_std()),
            abandoned: Some(abandoned.clone()),
        };
        let handle = tokio::task::spawn_blocking(move || {
            // The permit is held until the job really ends, even after its caller gave up:
            // an abandoned job still occupies a thread, and the pool must count it.
            let _permit = permit;
            job(&deadline)
        });
        // Dropped with this future too (a client that hung up): the job learns it is abandoned.
        let _abandon = Abandon(abandoned);
        match tokio::time::timeout_at(until, handle).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => Err(PoolError::Failed(error.to_string())),
            Err(_) => Err(PoolError::Deadline(self.config.deadline)),
        }
    }
}

/// Counts a job as waiting while it lives; refuses to when the queue is full.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(waiting: &'a AtomicUsize, limit: usize) -> Result<Self, PoolError> {
        let before = waiting.fetch_add(1, Ordering::AcqRel);
        if before >= limit {
            waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(PoolError::Overloaded(before));
        }
        Ok(Self(waiting))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Marks a job abandoned when its caller stops waiting (answered, timed out or dropped).
struct Abandon(Arc<AtomicBool>);

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(workers: usize, queue: usize, deadline_ms: u64) -> Arc<EvalPool> {
        Arc::new(EvalPool::new(PoolConfig {
            workers,
            queue,
            deadline: Duration::from_millis(deadline_ms),
            slice: DEFAULT_SLICE,
        }))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_sheds_and_a_slow_job_misses_its_deadline() {
        let pool = pool(1, 1, 60_000);
        // One job holds the only worker until released; one more waits; the third is shed.
        let (release, released) = std::sync::mpsc::channel::<()>();
        let busy = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(move |_| released.recv().is_ok()).await }
        });
        while pool.running() == 0 {
            tokio::task::yield_now().await;
        }
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|_| 7).await }
        });
        while pool.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.run(|_| 1).await, Err(PoolError::Overloaded(1)));
        release.send(()).unwrap();
        assert_eq!(busy.await.unwrap(), Ok(true));
        assert_eq!(queued.await.unwrap(), Ok(7));

        // A job that outlives its deadline is refused, and told so.
        let pool = self::pool(1, 4, 50);
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (seen, saw) = std::sync::mpsc::channel::<bool>();
        let answer = pool
            .run(move |deadline| {
                let _ = released.recv();
                let _ = seen.send(deadline.expired());
                1
            })
            .await;
        assert_eq!(answer, Err(PoolError::Deadline(Duration::from_millis(50))));
        release.send(()).unwrap();
        assert_eq!(saw.recv(), Ok(true));
    }

    /// Spins for `span` (an item of real work, without sleeping: a sleep would yield).
    fn work(span: Duration) {
        let began = std::time::Instant::now();
        while began.elapsed() < span {
            std::hint::spin_loop();
        }
    }

    /// A sliced job lets the other tasks of its (single) worker run between its slices, and is
    /// admitted like any other job.
    #[tokio::test(flavor = "current_thread")]
    async fn a_sliced_job_yields_between_slices_and_is_admitted() {
        let pool = pool(1, 4, 60_000);
        let other = Arc::new(AtomicBool::new(false));
        tokio::spawn({
            let other = other.clone();
            async move { other.store(true, Ordering::Relaxed) }
        });
        // 200 items of 20 µs: 4 ms, forty slices; without yields the other task runs only after.
        let seen_at = pool
            .run_sliced(|mut pace| async move {
                for item in 0..200 {
                    assert!(pace.go_on().await);
                    if other.load(Ordering::Relaxed) {
                        return Some(item);
                    }
                    work(Duration::from_micros(20));
                }
                None
            })
            .await
            .unwrap();
        assert!(seen_at.is_some_and(|item| item < 199), "{seen_at:?}");

        // A queue of 0 refuses every job, sliced or not.
        let closed = self::pool(1, 0, 60_000);
        assert_eq!(
            closed.run_sliced(|_| async { 1 }).await,
            Err(PoolError::Overloaded(0))
        );
    }

    /// A sliced job is told when its deadline passed, and a blocking job's pace never yields.
    #[tokio::test(flavor = "current_thread")]
    async fn a_sliced_job_stops_at_its_deadline() {
        let pool = pool(1, 4, 20);
        let done = pool
            .run_sliced(|mut pace| async move {
                let mut done = 0;
                while done < 1_000 && pace.go_on().await {
                    work(Duration::from_millis(1));
                    done += 1;
                }
                done
            })
            .await
            .unwrap();
        assert!(done < 1_000, "the job went on past its deadline of 20 ms");

        let mut pace = Pace::blocking(&Deadline::never());
        let answer = run_to_end(async move {
            let mut items = 0;
            while items < 100 && pace.go_on().await {
                work(DEFAULT_SLICE / 10);
                items += 1;
            }
            items
        });
        assert_eq!(answer, Some(100));
        assert_eq!(run_to_end(std::future::pending::<()>()), None);
    }
}
