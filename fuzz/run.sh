#!/usr/bin/env bash
# Runs every fuzz target for a fixed time, one after the other, keeping the
# corpus between runs (fuzz/corpus/<target>, not in git; fuzz/seeds/<target>
# holds a small seed set that is). Not part of CI.
#
# Usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]   (default 300 s, all targets)
#        FUZZ_RUNS=10000000 fuzz/run.sh 0 magics         (a fixed number of executions instead)
#
# cargo-fuzz needs nightly-only flags; a stable toolchain accepts them with
# RUSTC_BOOTSTRAP=1. Targets build optimised with debug assertions (so
# integer overflow panics) and without a sanitizer: ciao has no unsafe code,
# and the sanitizer would cost most of the executions.
# A crash leaves its input in fuzz/artifacts/<target>/; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -O -a -s none <target> fuzz/artifacts/<target>/crash-…
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-300}"
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || mapfile -t targets < <(RUSTC_BOOTSTRAP=1 cargo fuzz list)

export RUSTC_BOOTSTRAP=1
flags=(-O -a -s none)
cargo fuzz build "${flags[@]}"
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t" logs
  seeds=()
  [ -d "seeds/$t" ] && seeds=("seeds/$t")
  echo "== $t for ${seconds} s"
  log="logs/$t.log"
  budget=(-max_total_time="$seconds")
  [ -n "${FUZZ_RUNS:-}" ] && budget=(-runs="$FUZZ_RUNS")
  if ! cargo fuzz run "${flags[@]}" "$t" "corpus/$t" "${seeds[@]}" -- \
      "${budget[@]}" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$log" 2>&1; then
    echo "   $t FOUND A CRASH: see $log and artifacts/$t/"
    status=1
  fi
  grep -E "^stat::number_of_executed_units|^stat::average_exec_per_sec|^stat::peak_rss_mb" "$log" | sed 's/^/   /' || true
  echo "   corpus: $(find "corpus/$t" -type f | wc -l) inputs"
done
exit "$status"
