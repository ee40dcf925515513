#!/usr/bin/env bash
# Two builds' microbenchmarks compared on a noisy machine: the old and the new binary run at the
# same time, each pinned to a core of its own (cores 0 and 1, swapped every half round), so drift in
# the host's clock or steal time hits both alike; per benchmark the least time over all
# repetitions of each side, and new / old. On the 2-vCPU AMD host an old-against-old run stayed
# within 1.3% (docs/notes/2026-12-04-avx2-paired-decode.md), where one binary after the other
# drifted 20-50%.
# Meant for compute-bound benchmarks (gemv_l2, gemm64); for DRAM-bound ones the two processes also
# share the memory bandwidth, which still treats both sides alike but is not a 1-process figure.
# usage: bench/ab_pair.sh OLD_MICROBENCH NEW_MICROBENCH FILTER [ROUNDS]
#   e.g. bench/ab_pair.sh /tmp/old/elutq_microbench build/bench/elutq_microbench '^gemv_l2/avx2/' 3
#   env: REPS (repetitions per benchmark and run, default 6), MIN_TIME (seconds, default 0.05)
set -euo pipefail
if [[ $# -lt 3 ]]; then
  sed -n '/^# usage:/,/^#   env:/s/^# //p' "$0"  # the usage lines of the header above
  exit 2
fi
OLD="$1"; NEW="$2"; FILTER="$3"; ROUNDS="${4:-3}"
REPS="${REPS:-6}"; MIN_TIME="${MIN_TIME:-0.05}"
for b in "$OLD" "$NEW"; do
  [[ -x "$b" ]] || { echo "ab_pair: $b is not an executable microbenchmark binary" >&2; exit 2; }
done
if [[ "$(nproc)" -lt 2 ]]; then
  echo "ab_pair: needs 2 cores (found $(nproc))" >&2
  exit 2
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
run() {  # binary core output
  taskset -c "$2" "$1" --benchmark_filter="$FILTER" --benchmark_min_time="$MIN_TIME" \
    --benchmark_repetitions="$REPS" 2>/dev/null | grep -E '^[a-z]' |
    grep -vE '_(mean|median|stddev|cv) ' >> "$3"
}
for ((r = 1; r <= ROUNDS; r++)); do
  run "$OLD" 0 "$work/old" & run "$NEW" 1 "$work/new" & wait
  run "$OLD" 1 "$work/old" & run "$NEW" 0 "$work/new" & wait
  echo "round $r of $ROUNDS done" >&2
done
# Least time per benchmark name (first column; the time is the second, in the unit printed).
awk 'FNR == 1 { side++ }
     { n = $1; sub("/real_time$", "", n); t = $2 + 0
       if (!((side, n) in best) || t < best[side, n]) best[side, n] = t; names[n] = 1 }
     END { for (n in names) if ((1, n) in best && (2, n) in best)
             printf "%-64s old %10.1f  new %10.1f  new/old %.3f\n", n, best[1, n], best[2, n],
                    best[2, n] / best[1, n] }' "$work/old" "$work/new" | sort
