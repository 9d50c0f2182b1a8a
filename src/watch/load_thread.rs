//! The one thread that loads snapshots and drops the ones they replace.
//!
//! The allocator (mimalloc) gives each thread its own heap and returns a page to the system
//! once the page is empty, but a block freed by another thread only reaches its page when the
//! owning thread next allocates from it. A snapshot loaded on one thread and dropped on another
//! stayed resident until much later (RSS of (c) after three reloads: ~400 MiB for one snapshot of
//! ~250): loads ran on any of tokio's blocking threads, and the replaced snapshot was dropped on
//! an async worker. Here the first load, every reload and the drop of every replaced snapshot
//! run on one long-lived thread, so a snapshot's memory is freed by the thread that allocated it
//! (BENCHMARKS.md, "Issue 22, session 20").

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

/// A handle to the load thread; the thread ends when every handle is dropped.
#[derive(Debug, Clone)]
pub struct LoadThread {
    jobs: mpsc::Sender<Job>,
}

/// The load thread is gone (it could not start, or a job panicked and took its answer with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the load thread failed")]
pub struct LoadThreadFailed;

impl LoadThread {
    /// Starts the thread.
    pub fn start() -> std::io::Result<LoadThread> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("zenml-authz-load".to_owned())
            .spawn(move || {
                for job in queue {
                    // A panicking job loses its answer (its caller sees `LoadThreadFailed`);
                    // the thread goes on with the next.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                }
            })?;
        Ok(LoadThread { jobs })
    }

    /// Runs `job` on the thread; its answer arrives on the receiver (`blocking_recv` outside
    /// an async runtime, `.await` inside one).
    pub fn submit<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> tokio::sync::oneshot::Receiver<T> {
        let (answer, receiver) = tokio::sync::oneshot::channel();
        // A send fails only when the thread is gone: the receiver then reports it.
        let _ = self.jobs.send(Box::new(move || {
            let _ = answer.send(job());
        }));
        receiver
    }

    /// Runs `job` on the thread and waits for its answer, from async code.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, LoadThreadFailed> {
        self.submit(job).await.map_err(|_| LoadThreadFailed)
    }

    /// Drops `value` on the thread, without waiting.
    pub fn drop_there<T: Send + 'static>(&self, value: T) {
        // Nobody waits for the answer (a receiver dropped unread is fine).
        drop(self.submit(move || drop(value)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_one_thread_in_order_and_a_panic_loses_only_its_answer() {
        let thread = LoadThread::start().unwrap();
        let first = thread
            .submit(|| std::thread::current().id())
            .blocking_recv()
            .unwrap();
        let failed = thread
            .submit(|| -> u8 { panic!("a failing load") })
            .blocking_recv();
        assert!(failed.is_err(), "a panicking job has no answer");
        let second = thread
            .submit(|| std::thread::current().id())
            .blocking_recv()
            .unwrap();
        assert_eq!(
            first, second,
            "every job runs on the one thread, which outlives a panic"
        );
        assert_ne!(first, std::thread::current().id());
    }
}
