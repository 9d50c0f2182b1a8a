#!/usr/bin/env bash
# Runs the fuzz targets (FUZZING.md), one at a time, each for a fixed time, on a scratch corpus
# seeded from the committed seeds (fuzz/seeds/<target>/ -> fuzz/corpus/<target>/, not committed;
# emptied first unless FUZZ_KEEP_CORPUS=1, so that a run with a fixed seed starts from the seeds).
#
#   scripts/fuzz.sh [seconds-per-target] [target...]      (default: 60 s, every target)
#
# Prints, per target, libFuzzer's number of executions and whether it found a crash (panic,
# failed assertion, stack overflow, timeout or out-of-memory; the input is kept under
# fuzz/artifacts/<target>/), and exits 1 when any target crashed.
#
# Environment:
#   FUZZ_SEED         libFuzzer's -seed (default 1)
#   FUZZ_KEEP_CORPUS  1: continue from the corpus grown by earlier runs
#   FUZZ_SANITIZER    cargo fuzz --sanitizer (default none: the crate forbids `unsafe` and
#                     allocates through mimalloc, which AddressSanitizer does not track;
#                     panics, assertion failures and stack overflows are caught without it)
#   FUZZ_TOOLCHAIN    default nightly
#   FUZZ_ARGS         extra libFuzzer flags, e.g. "-timeout=2 -jobs=1"
#   FUZZ_JOBS         cargo build jobs (default 2)
# The targets read FUZZ_MAX_BYTES / FUZZ_MAX_ENTITIES (cedar_request's limits, FUZZING.md).
set -euo pipefail

seconds=${1:-60}
if [ $# -gt 0 ]; then shift; fi
all_targets=(resource_string cedar_request zenml_request directory)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi
seed=${FUZZ_SEED:-1}
sanitizer=${FUZZ_SANITIZER:-none}
toolchain=${FUZZ_TOOLCHAIN:-nightly}
read -r -a extra_args <<<"${FUZZ_ARGS:-}"

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# Per target: the largest input worth mutating (bigger inputs are skipped by the targets anyway).
max_len() {
    case $1 in
        resource_string) echo 512 ;;
        zenml_request) echo 4096 ;;
        cedar_request | directory) echo 16384 ;;
        *) echo 4096 ;;
    esac
}

for target in "${targets[@]}"; do
    if [ ! -d "seeds/$target" ]; then
        echo "unknown target \`$target\`; targets: ${all_targets[*]}" >&2
        exit 2
    fi
done

echo "building (${toolchain}, sanitizer ${sanitizer})" >&2
CARGO_BUILD_JOBS=${FUZZ_JOBS:-2} cargo "+$toolchain" fuzz build --sanitizer "$sanitizer" >&2

mkdir -p logs
failed=0
results=()
for target in "${targets[@]}"; do
    corpus="corpus/$target"
    if [ "${FUZZ_KEEP_CORPUS:-0}" != 1 ]; then rm -rf "$corpus"; fi
    mkdir -p "$corpus" "artifacts/$target"
    cp -n "seeds/$target"/* "$corpus"/ 2>/dev/null || true
    dict=()
    if [ -f "dicts/$target.dict" ]; then dict=("-dict=dicts/$target.dict"); fi
    log="logs/$target.log"
    echo "fuzzing $target for ${seconds}s (seed $seed, log fuzz/$log)" >&2
    status=0
    CARGO_BUILD_JOBS=${FUZZ_JOBS:-2} cargo "+$toolchain" fuzz run --sanitizer "$sanitizer" "$target" "$corpus" -- \
        -max_total_time="$seconds" -seed="$seed" -print_final_stats=1 -timeout=10 \
        -max_len="$(max_len "$target")" "${dict[@]}" "${extra_args[@]}" >"$log" 2>&1 || status=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
    execs=${execs:-?}
    if [ "$status" -eq 0 ]; then
        result="no crash"
    else
        failed=1
        kind=$(grep -m1 -oE 'deadly signal|panicked at [^ ]*|has overflowed its stack|ERROR: libFuzzer: (timeout|out-of-memory)[^ ]*' "$log" || echo "exit $status")
        input=$(grep -m1 -oE "Test unit written to [^ ]+" "$log" | sed 's/Test unit written to //' || true)
        result="CRASH ($kind)${input:+ input $input}"
    fi
    results+=("$(printf '%-16s %6ss %12s  %s' "$target" "$seconds" "$execs" "$result")")
done

printf '\n%-16s %7s %12s  %s\n' target time executions result
printf '%s\n' "${results[@]}"
exit "$failed"
