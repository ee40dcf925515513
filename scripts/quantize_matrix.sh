#!/usr/bin/env bash
# Quantizes stories260K and SmolLM2 with every method and parameter format, and scores each file
# through the LUT kernels, so two builds can be compared output for output (refactors must leave
# every file byte-identical and every perplexity equal).
#
# usage: scripts/quantize_matrix.sh ELUTQ_BINARY OUT_DIR [stories|smollm2|all]
#   then: scripts/quantize_matrix.sh --compare DIR_A DIR_B   (every file and score of A against B)
# ELUTQ_MATRIX_ONLY=REGEX runs only the configurations whose line matches it.
# Calibration is kept small (C4 documents, few short sequences) so the whole matrix runs in
# minutes; the aim is identity, not accuracy. SmolLM2 comes from scripts/fetch_smollm2.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${ELUTQ_SHARED:-$ROOT/../shared}"

if [ "${1:-}" = "--compare" ]; then
  A="$2" B="$3" bad=0 n=0
  for f in "$A"/*.gguf; do
    g="$B/$(basename "$f")"
    n=$((n + 1))
    if [ ! -f "$g" ]; then echo "MISSING $(basename "$f")"; bad=1; continue; fi
    if cmp -s "$f" "$g"; then echo "identical $(basename "$f")"; else echo "DIFFERENT $(basename "$f")"; bad=1; fi
  done
  # The scores of A's configurations (B may hold more).
  if grep -F -x -v -f "$B/scores.txt" "$A/scores.txt" > "$A/scores.differ"; then
    echo "SCORES DIFFER (A's lines not in B):"; cat "$A/scores.differ"; bad=1
  else
    echo "scores identical ($(wc -l < "$A/scores.txt") lines)"
  fi
  echo "$n files compared"
  exit $bad
fi

BIN="$1" OUT="$2" WHICH="${3:-all}"
mkdir -p "$OUT"
: > "$OUT/scores.txt"
C4="$SHARED/data/c4/c4_validation_2k.jsonl"
TEXT="$SHARED/data/tinystories/validation_head.txt"
WIKI="$SHARED/data/wikitext-2-raw/wiki.test.raw"
IDS="$(seq 1 7 330 | tr '\n' ' ')"  # 48 ids below both vocabularies' sizes

# name | model | eval text | quantize arguments
configs_for() {
  local m="$1"
  cat <<EOF
rtn-w4g32|--method rtn --bits 4 --group 32
rtn-w3g64|--method rtn --bits 3 --group 64
hlq-w2g32|--method hlq --bits 2 --group 32
hlq-w3g32-gradient|--method hlq --bits 3 --group 32 --fit gradient
hlq-w4g32-paper|--method hlq --bits 4 --group 32 --variant paper
hlqc-w3g32|--method hlq --bits 3 --group 32 --hlq-params compact
gptq-w3g32|--method gptq --bits 3 --group 32
gptq-w4g32-actorder|--method gptq --bits 4 --group 32 --act-order
hlqgptq-w2g32|--method hlq-gptq --bits 2 --group 32
hlqgptq-w3g32-paper|--method hlq-gptq --bits 3 --group 32 --variant paper
hlqcgptq-w4g32|--method hlq-gptq --bits 4 --group 32 --hlq-params compact
ganq-w3|--method ganq --bits 3
awq-w4g32|--method awq --bits 4 --group 32 --awq-grid 5
awq-clip-hlq-w3g32|--method hlq --bits 3 --group 32 --awq --awq-clip --awq-grid 5
EOF
  if [ "$m" = smollm2 ]; then
    echo "hlqgptq-w2g64-head|--method hlq-gptq --bits 2 --group 64 --output-bits 4 --output-group 64 --quantize-output"
    echo "hlqgptq-w4g128-datafree|--method hlq-gptq --bits 4 --group 128 --datafree"
  fi
}

run_model() {
  local m="$1" src="$2" text="$3" calib_args="$4"
  configs_for "$m" | grep -E "${ELUTQ_MATRIX_ONLY:-.}" | while IFS='|' read -r name args; do
    local out="$OUT/$m-$name.gguf" extra="$calib_args"
    case "$args" in *--datafree*) args="${args/--datafree/}"; extra="--nsamples 2 --seqlen 64" ;; esac
    echo "== $m $name"
    # shellcheck disable=SC2086
    "$BIN" quantize "$src" "$out" $args $extra -t 2 -q > "$OUT/$m-$name.log" 2>&1 ||
      { echo "quantize failed: see $OUT/$m-$name.log"; exit 1; }
    # Perplexity (LUT kernels) and the bits of the logits of 48 tokens, batched and decoded.
    local ppl lg dec
    ppl=$("$BIN" perplexity -m "$out" -f "$text" --ctx 128 --max-windows 2 -t 2 -q 2>&1 |
      grep '^ppl' | sed 's/  [0-9.]* tok\/s//')
    "$BIN" logits -m "$out" --ids "$IDS" -t 2 -o "$OUT/logits.bin" >/dev/null 2>&1
    lg=$(sha256sum < "$OUT/logits.bin" | cut -c1-16)
    "$BIN" logits -m "$out" --ids "$IDS" --decode -t 2 -o "$OUT/logits.bin" >/dev/null 2>&1
    dec=$(sha256sum < "$OUT/logits.bin" | cut -c1-16)
    rm -f "$OUT/logits.bin"
    echo "$m-$name $ppl logits $lg decode $dec" >> "$OUT/scores.txt"
  done
}

if [ "$WHICH" = all ] || [ "$WHICH" = stories ]; then
  run_model stories "$SHARED/models/stories260K/stories260K.bin" "$TEXT" \
    "--calib $TEXT --nsamples 4 --seqlen 128"
fi
if [ "$WHICH" = all ] || [ "$WHICH" = smollm2 ]; then
  SMOL="${ELUTQ_SMOLLM2:-$(bash "$ROOT/scripts/fetch_smollm2.sh")}"
  run_model smollm2 "$SMOL" "$WIKI" "--calib $C4 --nsamples 4 --seqlen 128"
fi
echo "done: $OUT"
