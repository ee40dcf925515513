#!/usr/bin/env bash
# The figures of docs/notes/2026-11-23-foundation.md (a measurement, not a test; long):
#   1. logit parity with HF transformers on random tiny models (tests/reference/test_hf_logits.py)
#   2. SmolLM2-135M-Instruct Q4_1 WikiText-2 test perplexity at ctx 2048, elutq vs transformers on
#      the gguf-dequantized weights with the same token ids (test_smollm2_ppl.py; WINDOWS windows,
#      default 0 = the whole file: 147 windows, ~16 min for the transformers side on 2 threads)
#   3. elutq's full-file perplexity alone (69 min on 1 thread of a busy machine; the same as 2's first half)
#   4. fp32 decode / prefill throughput at 1 and 2 threads (scripts/bench_fp32.sh)
#   5. stories260K perplexity on tinystories validation_head.txt, ctx 512, whole file
# usage: scripts/results_foundation.sh [BUILD_DIR]   env: WINDOWS (default 0), SKIP_HF=1 skips 2.
# Needs the reference venv (scripts/setup_venv.sh) and SmolLM2 (scripts/fetch_smollm2.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
export ELUTQ_CLI="$BUILD/elutq"
export ELUTQ_SHARED="${ELUTQ_SHARED:-$(cd "$ROOT/.." && pwd)/shared}"
export ELUTQ_SMOLLM2="${ELUTQ_SMOLLM2:-$(bash "$ROOT/scripts/fetch_smollm2.sh")}"
PY="${ELUTQ_VENV:-$HOME/.cache/elutq/venv}/bin/python"
WIKI="$ELUTQ_SHARED/data/wikitext-2-raw/wiki.test.raw"
[ -x "$ELUTQ_CLI" ] || { echo "no elutq at $ELUTQ_CLI; build first (scripts/build.sh)" >&2; exit 1; }

echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== 1. logit parity with HF transformers"
"$PY" "$ROOT/tests/reference/test_hf_logits.py"

echo "== 3. elutq perplexity, SmolLM2-135M-Instruct Q4_1, WikiText-2 test, ctx 2048, whole file"
( set -x; "$ELUTQ_CLI" perplexity -m "$ELUTQ_SMOLLM2" -f "$WIKI" --lines --ctx 2048 -t 2 -q )

if [ "${SKIP_HF:-0}" != 1 ]; then
  echo "== 2. elutq vs transformers, same ids, ${WINDOWS:-0} windows (0 = whole file)"
  "$PY" "$ROOT/tests/reference/test_smollm2_ppl.py" --max-windows "${WINDOWS:-0}" --verbose
fi

echo "== 4. fp32 throughput"
bash "$ROOT/scripts/bench_fp32.sh" "$ELUTQ_SMOLLM2" "$BUILD"

echo "== 5. stories260K, tinystories validation_head.txt, ctx 512 (protocols: docs/notes/2026-11-23-foundation.md)"
( set -x; "$ELUTQ_CLI" perplexity -m "$ELUTQ_SHARED/models/stories260K/stories260K.bin" \
    -f "$ELUTQ_SHARED/data/tinystories/validation_head.txt" --ctx 512 -t 2 -q )
echo "== load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
