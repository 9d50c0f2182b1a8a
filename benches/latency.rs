//! Latency distribution per decision (p50, p90, p99, p99.9, max) on each data set, which
//! criterion's means do not show: every operation is timed on its own over a mix of questions
//! (see `scripts/gen-data.py`), after one warm-up pass. Also a reload while the previous snapshot
//! is alive (what `serve` does), and each question's warm median (asked 31 times in a row), whose
//! spread across questions shows what the heaviest questions cost apart from cache misses.
//! Prints a Markdown table; `harness = false`, no criterion.
//!
//! `cargo bench --bench latency` or `BENCH_SETS=large cargo bench --bench latency`;
//! `BENCH_SAMPLES` (default 20000) and `BENCH_SECONDS` (default 8) bound each row.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench code: a failed step should stop the bench"
)]

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use zenml_authz::cache::{CacheConfig, DecisionCache};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Times `op(i)` for i = 0, 1, … until `samples` timings or `seconds` have been taken.
fn sample(samples: u64, seconds: u64, mut op: impl FnMut(usize)) -> Vec<Duration> {
    let budget = Duration::from_secs(seconds);
    let started = Instant::now();
    let mut out = Vec::with_capacity(samples as usize);
    let mut i = 0;
    while (out.len() as u64) < samples && started.elapsed() < budget {
        let t = Instant::now();
        op(i);
        out.push(t.elapsed());
        i += 1;
    }
    out
}

fn row(set: &str, what: &str, per: u64, mut timings: Vec<Duration>) {
    let n = timings.len();
    if n == 0 {
        println!("| {set} | {what} | 0 | | | | | | | |");
        return;
    }
    let [p50, p90, p99, p999, max, mean] = common::percentiles(&mut timings);
    let rate = per as f64 / mean.as_secs_f64();
    println!(
        "| {set} | {what} | {n} | {} | {} | {} | {} | {} | {} | {rate:.0} |",
        common::us(mean),
        common::us(p50),
        common::us(p90),
        common::us(p99),
        common::us(p999),
        common::us(max)
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` asks every target for its benches
    }
    let samples = env_num("BENCH_SAMPLES", 20_000);
    let seconds = env_num("BENCH_SECONDS", 8);
    println!(
        "| set | operation | samples | mean µs | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | decisions/s (one core) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for set in common::sets() {
        let snapshot = common::load_snapshot(&set);
        // A reload as `serve` does it: the active snapshot stays alive while the new one loads,
        // after an edit of one file (unchanged sources would reuse everything). A directory
        // edit (a team's binding) updates the store; a policy edit reuses it and re-validates the
        // edited file.
        // Up to 3 reloads of each kind, fewer when they are slow (at most ~10 s).
        let editable = common::Editable::new(&set);
        drop(editable.load());
        let timed = |edit: fn(&common::Editable)| {
            let mut reloads: Vec<Duration> = Vec::new();
            while reloads.len() < 3 && reloads.iter().sum::<Duration>() < Duration::from_secs(10) {
                edit(&editable);
                let t = Instant::now();
                let next = editable.load();
                reloads.push(t.elapsed());
                drop(next);
            }
            reloads
        };
        let directory_reloads = timed(common::Editable::edit_directory);
        let policy_reloads = timed(common::Editable::edit_policies);
        drop(editable);
        let shares = common::load_shares(&set);
        let meta = common::meta(&set);
        let questions = common::questions(&meta);
        let batch = common::batch(&meta);
        let listing = common::allowed_ids_question(&meta);
        // Warm up; when a decision takes milliseconds, use the first 100 questions only.
        let (questions, _slow, prepared) = common::workload(&snapshot, &shares, questions);
        let n = questions.len();
        for q in questions.iter().skip(20) {
            black_box(common::decide(&snapshot, &shares, &q.question()).ok());
        }

        row(
            &set,
            "reload after a directory edit (Loader::load)",
            1,
            directory_reloads,
        );
        row(
            &set,
            "reload after a policy edit (Loader::load)",
            1,
            policy_reloads,
        );
        row(
            &set,
            "decision, cache miss (prepare + engine::decide)",
            1,
            sample(samples, seconds, |i| {
                black_box(common::decide(&snapshot, &shares, &questions[i % n].question()).ok());
            }),
        );
        // Each question asked again and again (warm caches): its median of 31 timings, one sample
        // per question. Against the row above, the difference is what a cold cycle through the
        // mix costs (each question reaches other entities of a large heap) and the host's noise.
        row(
            &set,
            "  the same, each question's median of 31 in a row (one sample per question)",
            1,
            questions
                .iter()
                .take(samples as usize)
                .map(|q| {
                    let mut timings = sample(31, seconds, |_| {
                        black_box(common::decide(&snapshot, &shares, &q.question()).ok());
                    });
                    timings.sort_unstable();
                    timings[timings.len() / 2]
                })
                .collect(),
        );
        // The same, by kind of question (what the mix is made of).
        let mut kinds: Vec<&str> = questions.iter().map(|q| q.kind.as_str()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        for kind in kinds {
            let of_kind: Vec<_> = questions.iter().filter(|q| q.kind == kind).collect();
            let share = 100 * of_kind.len() / n;
            row(
                &set,
                &format!("  cache miss: {kind} ({share}% of the mix)"),
                1,
                sample(samples / 4, (seconds / 2).max(1), |i| {
                    let q = of_kind[i % of_kind.len()];
                    black_box(common::decide(&snapshot, &shares, &q.question()).ok());
                }),
            );
        }
        row(
            &set,
            "  of which engine::decide",
            1,
            sample(samples, seconds, |i| {
                black_box(
                    snapshot
                        .engine
                        .decide(&prepared[i % prepared.len()], &mut zenml_authz::Batch::single())
                        .ok(),
                );
            }),
        );
        let stored = common::cedar_request(&meta, &snapshot);
        row(
            &set,
            "  engine::decide, stored entities only (Cedar API; no slice)",
            1,
            sample(samples, seconds, |_| {
                black_box(
                    snapshot
                        .engine
                        .decide(&stored, &mut zenml_authz::Batch::single())
                        .ok(),
                );
            }),
        );
        let cache = DecisionCache::new(CacheConfig {
            enabled: true,
            max_bytes: 64 << 20,
            ttl: Duration::from_secs(3600),
        });
        for q in questions.iter().chain(&batch) {
            let _ = cache.get_or_compute(q.cache_key(&snapshot.revision, 0), || {
                common::decide(&snapshot, &shares, &q.question())
            });
        }
        row(
            &set,
            "decision, cache hit (key + moka get)",
            1,
            sample(samples, seconds, |i| {
                let key = questions[i % n].cache_key(&snapshot.revision, 0);
                black_box(
                    cache
                        .get_or_compute(key, || Err::<zenml_authz::Decision, ()>(()))
                        .ok(),
                );
            }),
        );
        // As `check_permissions` decides a page: equal Cedar requests evaluated once.
        row(
            &set,
            "batch of 20, cache miss (per batch)",
            batch.len() as u64,
            sample(samples / 20, seconds, |_| {
                let mut memo = zenml_authz::Batch::many();
                for q in &batch {
                    black_box(
                        common::zenml(&snapshot)
                            .decide(&shares, &q.question(), &mut memo)
                            .is_ok_and(|d| d.allowed),
                    );
                }
            }),
        );
        row(
            &set,
            "  the same 20, each decided alone (no batch memo)",
            batch.len() as u64,
            sample(samples / 20, seconds, |_| {
                for q in &batch {
                    black_box(common::decide(&snapshot, &shares, &q.question()).is_ok_and(|d| d.allowed));
                }
            }),
        );
        let candidates = meta["allowed_ids"]["candidates"].as_u64().unwrap_or(0);
        row(
            &set,
            &format!("allowed_ids ({candidates} shared candidates; per call)"),
            1,
            sample(samples / 20, seconds, |_| {
                black_box(common::allowed_ids(
                    &snapshot,
                    &shares,
                    &listing.workspace,
                    &listing.user,
                    &listing.action,
                    &listing.resource,
                ));
            }),
        );
    }
}
