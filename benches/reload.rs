//! Criterion bench of a full reload, `policy::load` (read, parse and strictly validate the
//! schema, every policy and the directory; build the entities and the slicing indexes), on
//! each data set. The share store is not part of a reload (it is loaded once at start).
//!
//! `cargo bench --bench reload` or `BENCH_SETS=policies cargo bench --bench reload`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench code: a failed step should stop the bench"
)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use zenml_authz::policy;

fn reload_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("reload");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for set in common::sets() {
        let sources = common::sources(&set);
        drop(common::load_snapshot(&set)); // fails loudly if the set is invalid
        group.bench_function(set.as_str(), |b| {
            b.iter(|| black_box(policy::load(&sources).is_ok()))
        });
    }
    group.finish();
}

criterion_group!(benches, reload_benches);
criterion_main!(benches);
