#!/usr/bin/env bash
# HLQ, HLQC and uniform at the same B and g, decode speed on synthetic LLaMA-2-7B linear layers,
# measured in alternation so that a noisy machine treats the three alike: ROUNDS rounds, each
# running every format once (`elutq bench --synthetic llama2-7b --runs RUNS`), then per format the
# median over rounds of the per-run medians, and per round the ratio to uniform; also the median
# over rounds of the ratio of roofline fractions (tok/s divided by the bandwidth probed in that
# bench), which takes out the drift of the machine's bandwidth between two benches of a round.
# usage: bench/hlq_vs_uniform.sh [BUILD]
#   env: ROUNDS (default 6), RUNS (decode runs per bench, default 3), THREADS (default 2),
#        CONFIG (B and g, default w4g128)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
ROUNDS="${ROUNDS:-6}"
RUNS="${RUNS:-3}"
THREADS="${THREADS:-2}"
CONFIG="${CONFIG:-w4g128}"
FORMATS=("uniform-$CONFIG" "hlqc-$CONFIG" "hlq-$CONFIG")
UNIFORM="${FORMATS[0]}"  # the reference of every ratio
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "\$ elutq bench --synthetic llama2-7b --format F --threads $THREADS --runs $RUNS --prefill-runs 0  (F alternating: ${FORMATS[*]})"
declare -A all norm
for ((r = 1; r <= ROUNDS; r++)); do
  line="round $r (load average $(cut -d' ' -f1 /proc/loadavg)):"
  declare -A tok bws
  for f in "${FORMATS[@]}"; do
    out="$("$BUILD/elutq" bench --synthetic llama2-7b --format "$f" --threads "$THREADS" \
      --runs "$RUNS" --prefill-runs 0)"
    tok[$f]="$(sed -n 's/^decode: \([0-9.]*\) tok\/s.*/\1/p' <<< "$out")"
    bws[$f]="$(sed -n 's/^memory read bandwidth.*median \([0-9.]*\) GB\/s.*/\1/p' <<< "$out")"
    all[$f]+="${tok[$f]} "
    line+="  $f ${tok[$f]} tok/s (probe ${bws[$f]} GB/s)"
  done
  for f in "${FORMATS[@]:1}"; do
    line+="  $f/uniform $(awk -v a="${tok[$f]}" -v b="${tok[$UNIFORM]}" 'BEGIN{printf "%.3f", a/b}')"
    n="$(awk -v a="${tok[$f]}" -v pa="${bws[$f]}" -v b="${tok[$UNIFORM]}" -v pb="${bws[$UNIFORM]}" \
      'BEGIN{printf "%.3f", (a/pa)/(b/pb)}')"
    norm[$f]+="$n "
    line+=" (per probe $n)"
  done
  echo "$line"
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END{print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
u="$(median <<< "${all[$UNIFORM]}")"
for f in "${FORMATS[@]}"; do
  m="$(median <<< "${all[$f]}")"
  echo "median over $ROUNDS rounds: $f $m tok/s ($(awk -v a="$m" -v b="$u" 'BEGIN{printf "%.3f", a/b}')x uniform)"
done
for f in "${FORMATS[@]:1}"; do
  echo "median over $ROUNDS rounds of the per-round roofline-fraction ratio: $f/uniform $(median <<< "${norm[$f]}")"
done
