//! The decision log: one JSON line per decision (and per share change), for audit.
//!
//! Architecture Invariant: logging never blocks or slows a request. Records go into a bounded
//! queue with `try_send`; when it is full the record is dropped and counted
//! (`authz_decision_log_dropped_total`). A dedicated thread writes them (stdout or an appended
//! file) and flushes whenever the queue runs empty.

use std::io::Write;
use std::path::PathBuf;

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
}

impl std::str::FromStr for Target {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "stdout" | "-" => Target::Stdout,
            path => Target::File(PathBuf::from(path)),
        })
    }
}

/// The sending side; cheap to share.
#[derive(Debug, Clone)]
pub struct DecisionLog {
    sender: Option<mpsc::Sender<Value>>,
    metrics: Metrics,
}

impl DecisionLog {
    /// A log that records nothing.
    pub fn disabled(metrics: Metrics) -> Self {
        Self {
            sender: None,
            metrics,
        }
    }

    /// Starts the writer thread for `target` with a queue of `capacity` records.
    pub fn start(target: &Target, capacity: usize, metrics: Metrics) -> std::io::Result<Self> {
        let mut output: Box<dyn Write + Send> = match target {
            Target::Stdout => Box::new(std::io::stdout()),
            Target::File(path) => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
        };
        let (sender, mut receiver) = mpsc::channel::<Value>(capacity.max(1));
        std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || {
                let mut buffer = std::io::BufWriter::new(&mut output);
                while let Some(record) = receiver.blocking_recv() {
                    let mut write = |record: &Value| {
                        let _ = serde_json::to_writer(&mut buffer, record);
                        let _ = buffer.write_all(b"\n");
                    };
                    write(&record);
                    while let Ok(record) = receiver.try_recv() {
                        write(&record);
                    }
                    if let Err(error) = buffer.flush() {
                        tracing::warn!(%error, "cannot write the decision log");
                    }
                }
            })?;
        Ok(Self {
            sender: Some(sender),
            metrics,
        })
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
