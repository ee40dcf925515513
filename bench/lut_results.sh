#!/usr/bin/env bash
# The speed tables of docs/RESULTS.md ("Speed"; earlier runs in docs/notes/):
#   1. synthetic LLaMA-2-7B linear layers at HLQ w2/w3/w4 g128, HLQC w4g128 and uniform w4g128 (and
#      w2 with int8 tables): decode (batch 1) and prefill (512 tokens) on 1 and 2 threads, each with its roofline
#      fraction;
#   2. SmolLM2-135M quantized data-free (elutq quantize, HLQ w2g128 / w4g128, uniform w4g128 RTN)
#      through the whole model (`elutq bench -m`), LUT kernels and the dequantized fp32 path.
# The load average is printed before each run: on a shared machine it says how far to trust them.
# usage: bench/lut_results.sh [BUILD] [WORK_DIR]
#   env: RUNS (decode runs, default 5), PREFILL_RUNS (default 1), SMOLLM2 (the source GGUF;
#   default ~/.cache/elutq/models/SmolLM2-135M-Instruct.Q4_1.gguf; skipped if absent)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
WORK="${2:-$BUILD/lut_results}"
RUNS="${RUNS:-5}"
PREFILL_RUNS="${PREFILL_RUNS:-1}"
SMOLLM2="${SMOLLM2:-${ELUTQ_SMOLLM2:-$HOME/.cache/elutq/models/SmolLM2-135M-Instruct.Q4_1.gguf}}"
ELUTQ="$BUILD/elutq"
mkdir -p "$WORK"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
# FORMAT[:TABLES]: the default tables (auto: int12 or int16 for 2-bit, by ISA; int8 above) unless
# TABLES is given; the 2-bit format runs with int8 tables too, for the speed that precision gives up.
for threads in 2 1; do
  for entry in hlq-w2g128 hlq-w2g128:int8 hlq-w3g128 hlq-w4g128 hlqc-w4g128 uniform-w4g128; do
    format="${entry%%:*}" tables=auto
    [[ "$entry" == *:* ]] && tables="${entry#*:}"
    echo "== synthetic llama2-7b $format, $tables tables, $threads threads (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    echo "\$ elutq bench --synthetic llama2-7b --format $format --lut-tables $tables --threads $threads --runs $RUNS --prefill-tokens 512 --prefill-runs $PREFILL_RUNS"
    "$ELUTQ" bench --synthetic llama2-7b --format "$format" --lut-tables "$tables" --threads "$threads" \
      --runs "$RUNS" --prefill-tokens 512 --prefill-runs "$PREFILL_RUNS" |
      grep -E '^(linear|memory|decode|prefill|load)'
  done
done
if [ ! -f "$SMOLLM2" ]; then
  echo "SmolLM2-135M not found at $SMOLLM2 (scripts/fetch_smollm2.sh fetches it); skipping"
  exit 0
fi
for spec in "hlq 2" "hlq 4" "rtn 4"; do
  set -- $spec
  out="$WORK/smollm2-$1-w$2g128.gguf"
  if [ ! -f "$out" ]; then
    "$ELUTQ" quantize "$SMOLLM2" "$out" --method "$1" --bits "$2" --group 128 -q >/dev/null
  fi
  for threads in 2 1; do
    for kernel in lut dequant; do
      echo "== SmolLM2-135M $1 w$2g128, $kernel, $threads threads (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
      echo "\$ elutq bench -m $(basename "$out") --kernel $kernel --threads $threads --runs $RUNS --prefill-tokens 512 --prefill-runs $PREFILL_RUNS"
      "$ELUTQ" bench -m "$out" --kernel "$kernel" --threads "$threads" --runs "$RUNS" \
        --prefill-tokens 512 --prefill-runs "$PREFILL_RUNS" | grep -E '^(bytes|memory|decode|prefill|load)'
    done
  done
done
