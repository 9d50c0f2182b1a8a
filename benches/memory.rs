//! Resident memory after loading each data set: every set is loaded in a fresh process (this
//! bench runs itself once per set and way), which reads `VmRSS` before and after `Loader::load`
//! plus the share store, and `VmHWM` (the peak). Each set twice: with the `Loader` dropped after
//! the load (`fresh`, as measured since the first round), and kept (`kept`), as the server keeps
//! it for its next reload. Prints a Markdown table; `harness = false`.
//!
//! `cargo bench --bench memory` or `BENCH_SETS=policies cargo bench --bench memory`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench code: a failed step should stop the bench"
)]

mod common;

use std::process::Command;
use std::time::Instant;

use zenml_authz::snapshot::Loader;

const CHILD: &str = "ZENML_AUTHZ_MEMORY_BENCH_SET";

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn child(set: &str, keep_loader: bool) {
    let before = common::rss_kib("VmRSS");
    let started = Instant::now();
    let mut loader = Loader::new();
    let snapshot = match loader.load(&common::sources(set)) {
        Ok(snapshot) => snapshot,
        Err(errors) => panic!("data set `{set}` does not load: {} error(s)", errors.len()),
    };
    let loader = if keep_loader {
        Some(loader)
    } else {
        drop(loader);
        None
    };
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let after_policies = common::rss_kib("VmRSS");
    let shares = common::load_shares(set);
    let after = common::rss_kib("VmRSS");
    let peak = common::rss_kib("VmHWM");
    let counts = snapshot.counts();
    // Cedar stores every entity with its transitively closed ancestor set: the main cost.
    let links: usize = snapshot
        .engine
        .entities
        .iter()
        .map(|e| {
            snapshot
                .engine
                .entities
                .ancestors(&e.uid())
                .map_or(0, Iterator::count)
        })
        .sum();
    let way = if keep_loader { "kept" } else { "fresh" };
    println!(
        "| {set} | {way} | {} | {} | {links} | {} | {load_ms:.0} | {} | {} | {} | {} |",
        counts.policies,
        counts.entities,
        shares.len(),
        mib(before),
        mib(after_policies),
        mib(after),
        mib(peak)
    );
    drop((snapshot, shares, loader));
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Ok(set) = std::env::var(CHILD) {
        match set.split_once(':') {
            Some((set, "kept")) => child(set, true),
            _ => child(&set, false),
        }
        return;
    }
    println!(
        "| set | loader | policies | entities | ancestor links (closed) | shares | first load ms | RSS before MiB | RSS after Loader::load MiB | RSS after + shares MiB | peak RSS (VmHWM) MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let exe = std::env::current_exe().expect("own path");
    for set in common::sets() {
        common::data_dir(&set); // generate before measuring
        for way in ["", ":kept"] {
            let status = Command::new(&exe)
                .env(CHILD, format!("{set}{way}"))
                .status()
                .expect("re-run");
            assert!(status.success(), "memory bench for `{set}{way}` failed");
        }
    }
}
