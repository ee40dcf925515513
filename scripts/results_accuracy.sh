#!/usr/bin/env bash
# Regenerates the accuracy tables of docs/RESULTS.md (between its accuracy markers): WikiText-2
# (test) and C4 (held-out documents) perplexity of FP and of every quantization method at several bit widths / group
# sizes, with bits per weight, quantization wall time and peak RSS, for stories260K and
# SmolLM2-135M. Every number comes from `elutq quantize` / `elutq perplexity` runs made here.
#
# C4 split: documents 1..1000 of shared/data/c4/c4_validation_2k.jsonl are the calibration set,
# documents 1001..2000 the held-out evaluation set (never seen by the quantizer).
#
# Everything is parameterised by environment variables, so the heavy model can be run small:
#   MODELS="stories260K smollm2"        which models
#   CONFIGS="w2g64 w2g128 w3g128 w4g128" bit width / group size pairs
#   METHODS="rtn gptq awq hlq hlq-paper hlq-gptq-paper-alt hlq-gptq-paper-grad
#            hlq-gptq-ours-alt hlq-gptq-ours-grad ganq"
#   STORIES_NSAMPLES=128 STORIES_SEQLEN=512 STORIES_WINDOWS=40     (ctx 512)
#   SMOL_NSAMPLES=16 SMOL_SEQLEN=512 SMOL_WINDOWS=4                 (ctx 2048)
#   THREADS=2  BUILD=build  WORK=build/results_accuracy  UPDATE_DOCS=1
#   KEEP="smollm2.w3g128.hlq-gptq-ours-alt ..."  quantized files to keep (by tag; others are
#                 deleted once evaluated)
#   TABLE_ONLY=1  rebuild the tables from the logs already in $WORK (runs nothing; rows of
#                 configs/methods never run are left out)
# Finished runs are kept in $WORK (one log per quantization / evaluation) and reused, so an
# interrupted or extended run only does what is missing; delete $WORK to start over. The tables
# list every default config and method (plus any named in CONFIGS / METHODS) that has a log in
# $WORK, not only those of this run, and keep docs/RESULTS.md's row where there is none, so a
# partial run never drops rows from docs/RESULTS.md.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"
ELUTQ="$BUILD/elutq"
SHARED="${ELUTQ_SHARED:-$ROOT/../shared}"
WORK="${WORK:-$BUILD/results_accuracy}"
THREADS="${THREADS:-2}"
MODELS="${MODELS:-stories260K smollm2}"
ALL_CONFIGS="w2g64 w2g128 w3g128 w4g128"
ALL_METHODS="rtn gptq awq hlq hlq-paper hlq-gptq-paper-alt hlq-gptq-paper-grad hlq-gptq-ours-alt hlq-gptq-ours-grad hlqc-gptq-ours-alt ganq"
CONFIGS="${CONFIGS:-$ALL_CONFIGS}"
METHODS="${METHODS:-$ALL_METHODS}"
# The table's rows: the defaults, then whatever this run adds to them, in order.
union() { local out="$1" w; for w in $2; do [[ " $out " == *" $w "* ]] || out+=" $w"; done; echo "$out"; }
TABLE_CONFIGS="$(union "$ALL_CONFIGS" "$CONFIGS")"
TABLE_METHODS="$(union "$ALL_METHODS" "$METHODS")"
STORIES_NSAMPLES="${STORIES_NSAMPLES:-128}"
STORIES_SEQLEN="${STORIES_SEQLEN:-512}"
STORIES_WINDOWS="${STORIES_WINDOWS:-40}"
SMOL_NSAMPLES="${SMOL_NSAMPLES:-16}"
SMOL_SEQLEN="${SMOL_SEQLEN:-512}"
SMOL_WINDOWS="${SMOL_WINDOWS:-4}"
UPDATE_DOCS="${UPDATE_DOCS:-1}"
TABLE_ONLY="${TABLE_ONLY:-0}"
SMOL="${ELUTQ_SMOLLM2:-$HOME/.cache/elutq/models/SmolLM2-135M-Instruct.Q4_1.gguf}"

# shellcheck source=lib/results_common.sh
source "$ROOT/scripts/lib/results_common.sh"
results_setup

# method label -> elutq quantize options
method_args() {
  case "$1" in
    rtn) echo "--method rtn" ;;
    gptq) echo "--method gptq" ;;
    awq) echo "--method awq" ;;
    hlq) echo "--method hlq --variant ours --fit alternating" ;;
    hlq-paper) echo "--method hlq --variant paper --fit alternating" ;;
    hlq-gptq-paper-alt) echo "--method hlq-gptq --variant paper --fit alternating" ;;
    hlq-gptq-paper-grad) echo "--method hlq-gptq --variant paper --fit gradient" ;;
    hlq-gptq-ours-alt) echo "--method hlq-gptq --variant ours --fit alternating" ;;
    hlq-gptq-ours-grad) echo "--method hlq-gptq --variant ours --fit gradient" ;;
    hlqc-gptq-ours-alt) echo "--method hlq-gptq --variant ours --fit alternating --hlq-params compact" ;;
    ganq) echo "--method ganq" ;;
    *) echo "unknown method label $1" >&2; exit 1 ;;
  esac
}
method_title() {
  case "$1" in
    rtn) echo "RTN (MSE clip)" ;;
    gptq) echo "GPTQ" ;;
    awq) echo "AWQ + RTN" ;;
    hlq) echo "HLQ, no calibration (our fit)" ;;
    hlq-paper) echo "HLQ, no calibration (paper fit)" ;;
    hlq-gptq-paper-alt) echo "HLQ-GPTQ paper, alternating" ;;
    hlq-gptq-paper-grad) echo "HLQ-GPTQ paper, gradient" ;;
    hlq-gptq-ours-alt) echo "HLQ-GPTQ ours, alternating" ;;
    hlq-gptq-ours-grad) echo "HLQ-GPTQ ours, gradient" ;;
    hlqc-gptq-ours-alt) echo "HLQC-GPTQ ours (compact parameters), alternating" ;;
    ganq) echo "GANQ (per-row codebook)" ;;
  esac
}

run_model() {
  local name="$1" src="$2" ctx="$3" ns="$4" sl="$5" win="$6"
  local table="$WORK/$name.md"
  [[ "$TABLE_ONLY" == 1 ]] || evaluate "$src" "$ctx" "$win" "$name.fp"
  local doc_rows
  doc_rows="$(sed -n "/<!-- accuracy:$name:begin -->/,/<!-- accuracy:$name:end -->/p" \
    "$ROOT/docs/RESULTS.md")"
  {
    echo "| config | method | bpw | WikiText-2 ppl | C4 ppl | quantize wall s | peak RSS MiB |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    if [[ -s "$WORK/$name.fp.wiki.log" && -s "$WORK/$name.fp.c4.log" ]]; then
      echo "| fp | FP (source weights) | $( [[ $name == smollm2 ]] && echo "5.0 (Q4_1)" || echo 32) | $(ppl_of "$WORK/$name.fp.wiki.log") | $(ppl_of "$WORK/$name.fp.c4.log") | - | - |"
    else
      grep -F "| fp | FP (source weights) |" <<< "$doc_rows" || true
    fi
  } > "$table"
  # Quantize and evaluate what this run asks for and has no logs of yet.
  [[ "$TABLE_ONLY" == 1 ]] || for cfg in $CONFIGS; do
    local bits="${cfg#w}"; bits="${bits%%g*}"; local group="${cfg#*g}"
    for m in $METHODS; do
      local tag="$name.$cfg.$m" out="$WORK/$name.$cfg.$m.gguf"
      if ! grep -q '^summary:' "$WORK/$tag.quant.log" 2>/dev/null; then
        echo "== $tag" >&2
        # Calibration-free methods run without calibration data, so their wall time is theirs.
        local calib=(--calib "$WORK/c4_calib.jsonl" --nsamples "$ns" --seqlen "$sl")
        case "$m" in rtn|hlq|hlq-paper) calib=() ;; esac
        # shellcheck disable=SC2046
        "$ELUTQ" quantize "$src" "$out" $(method_args "$m") --bits "$bits" --group "$group" \
          "${calib[@]}" -t "$THREADS" -q --restart > "$WORK/$tag.quant.log" 2>&1 || { echo "failed: $tag" >&2; tail -3 "$WORK/$tag.quant.log" >&2; continue; }
      fi
      [[ -f "$out" ]] && evaluate "$out" "$ctx" "$win" "$tag"
      # The numbers are in the logs; the files are large for SmolLM2.
      [[ " ${KEEP:-} " == *" $tag "* ]] || rm -f "$out"
    done
  done
  # One row per config and method with a finished quantization log, this run's or an earlier one's;
  # without a log, the row docs/RESULTS.md already has (if any) stays as it is.
  for cfg in $TABLE_CONFIGS; do
    for m in $TABLE_METHODS; do
      local tag="$name.$cfg.$m"
      if ! grep -q '^summary:' "$WORK/$tag.quant.log" 2>/dev/null; then
        grep -F "| $cfg | $(method_title "$m") |" <<< "$doc_rows" >> "$table" || true
        continue
      fi
      local s; s="$(grep '^summary:' "$WORK/$tag.quant.log")"
      local bpw wall rss
      bpw="$(sed -n 's/.*bpw \([0-9.]*\).*/\1/p' <<< "$s")"
      wall="$(sed -n 's/.*wall \([0-9.]*\) s.*/\1/p' <<< "$s")"
      rss="$(sed -n 's/.*peak RSS \([0-9.]*\) MiB.*/\1/p' <<< "$s")"
      echo "| $cfg | $(method_title "$m") | $bpw | $(ppl_of "$WORK/$tag.wiki.log") | $(ppl_of "$WORK/$tag.c4.log") | $wall | $rss |" >> "$table"
    done
  done
  echo "$table"
}

for model in $MODELS; do
  case "$model" in
    stories260K)
      run_model stories260K "$SHARED/models/stories260K/stories260K.bin" 512 \
        "$STORIES_NSAMPLES" "$STORIES_SEQLEN" "$STORIES_WINDOWS" ;;
    smollm2)
      [[ -f "$SMOL" ]] || { echo "skip smollm2: $SMOL missing (scripts/fetch_smollm2.sh)" >&2; continue; }
      run_model smollm2 "$SMOL" 2048 "$SMOL_NSAMPLES" "$SMOL_SEQLEN" "$SMOL_WINDOWS" ;;
    *) echo "unknown model $model" >&2; exit 1 ;;
  esac
done

# Splice the tables into docs/RESULTS.md between the accuracy markers (the prose around the
# tables is written by hand from these numbers).
if [[ "$UPDATE_DOCS" == 1 ]]; then
  python3 - "$ROOT/docs/RESULTS.md" "$WORK" <<'EOF'
import os, re, sys
doc, work = sys.argv[1], sys.argv[2]
text = open(doc).read()
for name in ("stories260K", "smollm2"):
    path = os.path.join(work, name + ".md")
    if not os.path.exists(path):
        continue
    begin, end = f"<!-- accuracy:{name}:begin -->", f"<!-- accuracy:{name}:end -->"
    if begin not in text:
        continue
    table = open(path).read().strip()
    text = re.sub(re.escape(begin) + ".*?" + re.escape(end),
                  lambda m: begin + "\n" + table + "\n" + end, text, flags=re.S)
open(doc, "w").write(text)
EOF
fi
