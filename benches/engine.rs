//! Criterion benches of the decision path on each data set (`scripts/gen-data.py`):
//! a single decision on a cache miss (`Decider::prepare` + `Engine::decide`, and each part alone),
//! a cache hit, the ZenML batch of 20 checks, and `allowed_resource_ids`.
//!
//! `cargo bench --bench engine` (all sets) or `BENCH_SETS=large cargo bench --bench engine`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench code: a failed step should stop the bench"
)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use zenml_authz::cache::{CacheConfig, DecisionCache};
use zenml_authz::zenml::ResourceAs;

fn engine_benches(c: &mut Criterion) {
    for set in common::sets() {
        let snapshot = common::load_snapshot(&set);
        let shares = common::load_shares(&set);
        let meta = common::meta(&set);
        let questions = common::questions(&meta);
        let batch = common::batch(&meta);
        let listing = common::allowed_ids_question(&meta);
        // Keep the run bounded: when one decision takes milliseconds, the benches cycle over
        // the first 100 questions only, take fewer samples, and leave the batch and the
        // listing to the latency bench.
        let (questions, slow, prepared) = common::workload(&snapshot, &shares, questions);
        let n = questions.len();
        let allowed = questions
            .iter()
            .filter(|q| common::decide(&snapshot, &shares, &q.question()).is_ok_and(|d| d.allowed))
            .count();
        eprintln!(
            "{set}: {} policies, {} entities, {} shares; {n} questions ({allowed} allowed, {} evaluated by Cedar)",
            snapshot.counts().policies,
            snapshot.counts().entities,
            shares.len(),
            prepared.len()
        );

        let mut group = c.benchmark_group(set.as_str());
        group.throughput(Throughput::Elements(1));
        if slow {
            eprintln!("{set}: a decision takes > 2 ms; 10 samples, no batch20_miss or allowed_ids");
            group.sample_size(10);
        }

        // A cache miss: the whole uncached ZenML decision, as `check_permissions` computes it.
        let mut i = 0;
        group.bench_function("decide_miss", |b| {
            b.iter(|| {
                let q = &questions[i % n];
                i += 1;
                black_box(common::decide(&snapshot, &shares, &q.question()))
            })
        });
        let mut i = 0;
        group.bench_function("prepare_only", |b| {
            b.iter(|| {
                let q = &questions[i % n];
                i += 1;
                black_box(common::zenml(&snapshot).prepare(&shares, &q.question(), ResourceAs::StandIn))
            })
        });
        let mut i = 0;
        group.bench_function("engine_decide_only", |b| {
            b.iter(|| {
                let request = &prepared[i % prepared.len()];
                i += 1;
                black_box(snapshot.engine.decide(request, &mut zenml_authz::Batch::single()))
            })
        });

        // The Cedar API's case: stored principal and resource, so no slice is built.
        let stored = common::cedar_request(&meta, &snapshot);
        group.bench_function("engine_decide_stored_entities", |b| {
            b.iter(|| black_box(snapshot.engine.decide(&stored, &mut zenml_authz::Batch::single())))
        });

        // A cache hit, key construction included (as `http::zenml` builds it per check).
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
        let mut i = 0;
        group.bench_function("cache_hit", |b| {
            b.iter(|| {
                let q = &questions[i % n];
                i += 1;
                black_box(cache.get_or_compute(q.cache_key(&snapshot.revision, 0), || {
                    Err::<zenml_authz::Decision, ()>(())
                }))
            })
        });

        // The ZenML batch: one check_permissions call with 20 resources.
        group.throughput(Throughput::Elements(batch.len() as u64));
        if !slow {
            group.bench_function("batch20_miss", |b| {
                b.iter(|| {
                    for q in &batch {
                        black_box(common::decide(&snapshot, &shares, &q.question()).is_ok_and(|d| d.allowed));
                    }
                })
            });
        }
        group.bench_function("batch20_hit", |b| {
            b.iter(|| {
                for q in &batch {
                    black_box(
                        cache
                            .get_or_compute(q.cache_key(&snapshot.revision, 0), || {
                                Err::<zenml_authz::Decision, ()>(())
                            })
                            .is_ok_and(|d| d.allowed),
                    );
                }
            })
        });

        // allowed_resource_ids: the type-level check, then every known id of the type.
        group.throughput(Throughput::Elements(1));
        let ws = listing.workspace.as_str();
        if !slow {
            group.bench_function("allowed_ids", |b| {
                b.iter(|| {
                    black_box(common::allowed_ids(
                        &snapshot,
                        &shares,
                        ws,
                        &listing.user,
                        &listing.action,
                        &listing.resource,
                    ))
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = engine_benches
}
criterion_main!(benches);
