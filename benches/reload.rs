//! Criterion bench of a reload, `Loader::load` (read, parse and strictly validate the schema,
//! every policy and the directory; build the entities and the slicing indexes), on each data
//! set, after an edit of the directory file (its store rebuilt) and after an edit of one
//! policy file (the store reused; that file validated again). The share store is not part of
//! a reload (it is loaded once at start).
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

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

fn reload_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("reload");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for set in common::sets() {
        // Each load follows an edit of one file: unchanged sources would reuse everything.
        let editable = common::Editable::new(&set);
        drop(editable.load()); // fails loudly if the set is invalid
        group.bench_function(format!("directory_edit/{set}"), |b| {
            b.iter_batched(
                || editable.edit_directory(),
                |()| black_box(editable.load()),
                BatchSize::PerIteration,
            )
        });
        group.bench_function(format!("policy_edit/{set}"), |b| {
            b.iter_batched(
                || editable.edit_policies(),
                |()| black_box(editable.load()),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, reload_benches);
criterion_main!(benches);
