#!/usr/bin/env bash
# fp32 runtime throughput: decode and prefill tokens/s of a model (default SmolLM2-135M-Instruct,
# its Q4_1 GGUF dequantized to fp32 at load) at 1 and 2 threads, through `elutq logits --bench`.
# usage: scripts/bench_fp32.sh [MODEL] [BUILD_DIR]
#   env: PREFILL_TOKENS (default 512), DECODE_TOKENS (default 128), THREADS (default "1 2"),
#        REPEATS (default 3; the best run is reported)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODEL="${1:-$HOME/.cache/elutq/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
BUILD="${2:-$ROOT/build}"
ELUTQ="$BUILD/elutq"
PREFILL_TOKENS="${PREFILL_TOKENS:-512}"
DECODE_TOKENS="${DECODE_TOKENS:-128}"
THREADS="${THREADS:-1 2}"
REPEATS="${REPEATS:-3}"
[ -x "$ELUTQ" ] || { echo "no elutq binary at $ELUTQ; build first (scripts/build.sh)" >&2; exit 1; }
[ -e "$MODEL" ] || { echo "model $MODEL not found; run scripts/fetch_smollm2.sh" >&2; exit 1; }

# Deterministic pseudo-random token ids below 512 (valid in every vocabulary we run).
ids() { awk -v n="$1" 'BEGIN { x = 1; for (i = 0; i < n; i++) { printf "%d ", x; x = (x * 73 + 11) % 509 } }'; }

# Best tok/s of REPEATS runs of: elutq logits --bench $@
best() {
  local best=0 r
  for _ in $(seq "$REPEATS"); do
    r=$("$ELUTQ" logits --bench "$@" 2>&1 >/dev/null | sed -n 's/.*= \([0-9.]*\) tok\/s.*/\1/p')
    [ -n "$r" ] || { echo "elutq logits failed: $ELUTQ logits --bench $*" >&2; exit 1; }
    best=$(awk -v a="$best" -v b="$r" 'BEGIN { print (b > a ? b : a) }')
  done
  echo "$best"
}

echo "model: $MODEL"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
printf "%-8s %-22s %-22s\n" threads "prefill tok/s ($PREFILL_TOKENS)" "decode tok/s ($DECODE_TOKENS)"
for t in $THREADS; do
  p=$(best -m "$MODEL" -t "$t" --ids "$(ids "$PREFILL_TOKENS")")
  d=$(best -m "$MODEL" -t "$t" --decode --ids "$(ids "$DECODE_TOKENS")")
  printf "%-8s %-22s %-22s\n" "$t" "$p" "$d"
done
