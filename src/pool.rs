//! The evaluation pool: where work whose cost a caller controls runs, off the async workers.
//!
//! A Cedar request with request-scoped entities, a batch, or a long ZenML page costs time in
//! proportion to what the caller sent (entity parsing, Cedar's transitive closure, one
//! evaluation per item). Run on the async workers, a few such requests would stall every
//! connection, `/healthz` included. So they run here instead: on tokio's blocking threads, at
//! most `workers` at once (a semaphore), with at most `queue` more waiting. Beyond that the
//! request is shed at once (`503` with `Retry-After`), never queued without bound. Every job
//! has a deadline: the caller gets `503` when it passes, whether the job was still waiting or
//! running, and the job is told to stop ([`Deadline::expired`], checked between items). A
//! single cheap decision (no request-scoped entities) is answered inline: it costs a few
//! microseconds, less than the hand-off.
//!
//! Architecture Invariant: a job that did not finish before its deadline answers nothing: its
//! result is dropped and the caller is refused (fail closed), never given a partial allow.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

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

    /// Runs `job` on a blocking thread when one is free, within the deadline.
    pub async fn run<T, F>(&self, job: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce(&Deadline) -> T + Send + 'static,
    {
        let until = Instant::now() + self.config.deadline;
        let permit = {
            let waiting = Waiting::enter(&self.waiting, self.config.queue)?;
            let permit = tokio::time::timeout_at(until, self.permits.clone().acquire_owned()).await;
            drop(waiting);
            match permit {
                Ok(Ok(permit)) => permit,
                Ok(Err(closed)) => return Err(PoolError::Failed(closed.to_string())),
                Err(_) => return Err(PoolError::Deadline(self.config.deadline)),
            }
        };
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
}
