//! The decision log: one JSON line per decision (and per share change), for audit.
//!
//! Architecture Invariant: logging never blocks or slows a request. Records go into a bounded
//! queue with `try_send`; when it is full the record is dropped and counted
//! (`authz_decision_log_dropped_total`). A dedicated thread writes them (stdout or an appended
//! file) and flushes whenever the queue runs empty; it also keeps the last records it wrote,
//! numbered, for the console's live tail ([`Recent`]), so the tail costs a request nothing and
//! shows exactly what the log holds (the same records, redacted alike: no context, entities or
//! credentials are ever recorded). `--decision-log memory` keeps only that tail.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// Where decision records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Standard output.
    Stdout,
    /// A file, appended to (created if missing).
    File(PathBuf),
    /// Nowhere but the in-memory tail ([`Recent`]).
    Memory,
}

impl std::str::FromStr for Target {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "stdout" | "-" => Target::Stdout,
            "memory" => Target::Memory,
            path => Target::File(PathBuf::from(path)),
        })
    }
}

/// The sending side; cheap to share.
#[derive(Debug, Clone)]
pub struct DecisionLog {
    sender: Option<mpsc::Sender<Value>>,
    recent: Recent,
    metrics: Metrics,
}

/// The last records the log wrote, each with its sequence number (1, 2, …).
#[derive(Debug, Clone, Default)]
pub struct Recent {
    inner: Arc<Mutex<RecentRecords>>,
}

#[derive(Debug, Default)]
struct RecentRecords {
    /// How many are kept.
    capacity: usize,
    /// The number of the last record written (0: none yet).
    last: u64,
    records: VecDeque<Arc<Value>>,
}

// === impl Recent ===

impl Recent {
    /// A tail of at most `capacity` records.
    fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(RecentRecords {
                capacity,
                last: 0,
                records: VecDeque::with_capacity(capacity.min(1024)),
            })),
        }
    }

    fn push(&self, record: Value) {
        let mut recent = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        recent.last += 1;
        if recent.capacity == 0 {
            return;
        }
        if recent.records.len() == recent.capacity {
            recent.records.pop_front();
        }
        recent.records.push_back(Arc::new(record));
    }

    /// How many records the tail keeps.
    pub fn capacity(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).capacity
    }

    /// The kept records numbered above `after` (oldest first, with their numbers), and the
    /// number of the last record written.
    pub fn after(&self, after: u64) -> (Vec<(u64, Arc<Value>)>, u64) {
        let recent = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let first = recent.last + 1 - recent.records.len() as u64;
        let records = recent
            .records
            .iter()
            .zip(first..)
            .filter(|(_, number)| *number > after)
            .map(|(record, number)| (number, record.clone()))
            .collect();
        (records, recent.last)
    }
}

impl DecisionLog {
    /// A log that records nothing.
    pub fn disabled(metrics: Metrics) -> Self {
        Self {
            sender: None,
            recent: Recent::default(),
            metrics,
        }
    }

    /// Starts the writer thread for `target` with a queue of `capacity` records, keeping the
    /// last `keep` written in its [`Recent`] tail.
    pub fn start(target: &Target, capacity: usize, keep: usize, metrics: Metrics) -> std::io::Result<Self> {
        let mut output: Box<dyn Write + Send> = match target {
            Target::Stdout => Box::new(std::io::stdout()),
            Target::File(path) => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
            Target::Memory => Box::new(std::io::sink()),
        };
        let recent = Recent::new(keep);
        let tail = recent.clone();
        let (sender, mut receiver) = mpsc::channel::<Value>(capacity.max(1));
        std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || {
                let mut buffer = std::io::BufWriter::new(&mut output);
                while let Some(record) = receiver.blocking_recv() {
                    let mut write = |record: Value| {
                        let _ = serde_json::to_writer(&mut buffer, &record);
                        let _ = buffer.write_all(b"\n");
                        tail.push(record);
                    };
                    write(record);
                    while let Ok(record) = receiver.try_recv() {
                        write(record);
                    }
                    if let Err(error) = buffer.flush() {
                        tracing::warn!(%error, "cannot write the decision log");
                    }
                }
            })?;
        Ok(Self {
            sender: Some(sender),
            recent,
            metrics,
        })
    }

    /// The last records written (none while the log is off).
    pub fn recent(&self) -> &Recent {
        &self.recent
    }

    /// Whether records are kept.
    pub fn enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// Queues one record, or drops and counts it when the queue is full.
    pub fn record(&self, record: Value) {
        if let Some(sender) = &self.sender
            && sender.try_send(record).is_err()
        {
            self.metrics.decision_log_dropped();
        }
    }
}

/// Now, RFC 3339.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
