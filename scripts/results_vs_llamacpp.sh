#!/usr/bin/env bash
# Regenerates the table "Against llama.cpp's types on Qwen2.5-Coder-1.5B" of docs/RESULTS.md
# (between its vs-llamacpp markers): llama.cpp's own quantizations of the model, with and without
# an importance matrix, beside our files, all scored the same way by `elutq perplexity` (WikiText-2
# test and held-out C4, ctx 2048, the first $WINDOWS windows), with the bits per weight of the
# linear layers computed one way for every file (their bytes, codes and parameters, over their
# weights, from `elutq inspect`) and each quantization's wall time and peak RSS.
#
# llama.cpp (reference tooling, scripts/fetch_llamacpp.sh): the importance matrix comes from the
# text our quantizer calibrates on (C4 validation documents 1..1000), 32 chunks of 512 tokens;
# every file keeps the source's treatment of the embedding (Q4_K) and the head (Q6_K), as our files
# do (`--token-embedding-type q4_k --output-tensor-type q6_k`); the source is Q4_K_M, so
# llama-quantize requantizes (`--allow-requantize`). Types that llama-quantize refuses without an
# importance matrix (IQ2_XXS, IQ2_XS, IQ2_S) get a row saying so.
#
#   TYPES="Q2_K IQ2_XXS IQ2_XS IQ2_S Q3_K_S IQ3_XXS IQ3_S Q4_K_S IQ4_XS"  IMATRIX="with without"
#   OURS="2|mix2.9_hlq-ft|/path/file.gguf|wall_s|rss_mib 3|...|..."  our files to score (class,
#        name, path, and optionally how long quantizing took and its peak RSS, from its own run)
#   WINDOWS=16  THREADS=2  BUILD=build  WORK=~/.cache/elutq/results-vs-llamacpp  UPDATE_DOCS=1
# Every quantization and perplexity run is kept in $WORK (files and logs) and reused, so an
# interrupted run goes on where it stopped; delete a log to measure that entry again.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"
ELUTQ="$BUILD/elutq"
SHARED="${ELUTQ_SHARED:-$ROOT/../shared}"
WORK="${WORK:-${ELUTQ_CACHE:-$HOME/.cache/elutq}/results-vs-llamacpp}"
THREADS="${THREADS:-2}"
WINDOWS="${WINDOWS:-16}"
TYPES="${TYPES:-Q2_K IQ2_XXS IQ2_XS IQ2_S Q3_K_S IQ3_XXS IQ3_S Q4_K_S IQ4_XS}"
IMATRIX="${IMATRIX:-with without}"
OURS="${OURS:-}"
UPDATE_DOCS="${UPDATE_DOCS:-1}"

# shellcheck source=lib/results_common.sh
source "$ROOT/scripts/lib/results_common.sh"
results_setup
SRC="$(bash "$ROOT/scripts/fetch_qwen15b.sh")"
BIN="$(bash "$ROOT/scripts/fetch_llamacpp.sh")"
export LD_LIBRARY_PATH="$BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# Bits per weight of the decoder's linear layers (bytes x 8 over weights), from `elutq inspect`.
linear_bpw() {
  "$ELUTQ" inspect -m "$1" | awk '
    $1 ~ /^blk\.[0-9]+\.(attn_(q|k|v|output)|ffn_(gate|up|down))\.weight$/ {
      gsub(/[\[\],]/, " ", $0); split($0, f, " +");
      n = 1; for (i = 2; i < NF; ++i) if ($i ~ /^[0-9]+$/) n *= $i;
      bits += $NF * 8; weights += n }
    END { if (weights) printf "%.4f", bits / weights }'
}
# wall seconds and peak RSS (MiB) from a /usr/bin/time -v log
time_of() { sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$1" | awk -F: '{ s = 0; for (i = 1; i <= NF; ++i) s = s * 60 + $i; printf "%.1f", s }'; }
rss_of() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1" | awk '{ printf "%.1f", $1 / 1024 }'; }

# The importance matrix, from the calibration documents as plain text.
imat="$WORK/imatrix.gguf"  # llama-imatrix writes GGUF
if [[ ! -s "$imat" ]]; then
  python3 -c 'import json, sys
print("\n\n".join(json.loads(l)["text"] for l in open(sys.argv[1]) if l.strip()))' \
    "$WORK/c4_calib.jsonl" > "$WORK/c4_calib.txt"
  echo "== importance matrix (32 x 512 tokens)" >&2
  /usr/bin/time -v "$BIN/llama-imatrix" -m "$SRC" -f "$WORK/c4_calib.txt" -o "$WORK/imatrix.tmp.gguf" \
    -c 512 --chunks 32 -t "$THREADS" > "$WORK/imatrix.log" 2>&1 && mv "$WORK/imatrix.tmp.gguf" "$imat" ||
    { echo "llama-imatrix failed: $WORK/imatrix.log" >&2; tail -5 "$WORK/imatrix.log" >&2; exit 1; }
fi

class_of() {  # llama.cpp type -> bits class
  case "$1" in Q2_K|IQ2_*|IQ1_*) echo 2 ;; Q3_K*|IQ3_*) echo 3 ;; *) echo 4 ;; esac
}

table="$WORK/table.md"
: > "$table"
row() { echo "| $* |" >> "$table"; }
# Perplexity logs are named by file and window count: a run with other windows measures anew.
score() {  # FILE TAG -> "wiki | c4"
  evaluate "$1" 2048 "$WINDOWS" "$2.w$WINDOWS"
  echo "$(ppl_of "$WORK/$2.w$WINDOWS.wiki.log") | $(ppl_of "$WORK/$2.w$WINDOWS.c4.log")"
}
row "source | Q4_K_M (as published) | $(linear_bpw "$SRC") | $(score "$SRC" source) | - | -"
for type in $TYPES; do
  for im in $IMATRIX; do
    tag="$type-$im-imatrix"
    out="$WORK/qwen-$tag.gguf"
    qlog="$WORK/$tag.quant.log"
    if [[ ! -f "$out" ]] && ! grep -q 'requires an importance matrix' "$qlog" 2>/dev/null; then
      echo "== llama-quantize $tag" >&2
      extra=()
      [[ $im == with ]] && extra=(--imatrix "$imat")
      /usr/bin/time -v "$BIN/llama-quantize" --allow-requantize "${extra[@]}" \
        --token-embedding-type q4_k --output-tensor-type q6_k "$SRC" "$out.tmp" "$type" "$THREADS" \
        > "$qlog" 2>&1 && mv "$out.tmp" "$out" || rm -f "$out.tmp"
    fi
    name="llama.cpp $type, $im importance matrix"
    if [[ ! -f "$out" ]]; then
      why="quantization failed ($qlog)"
      grep -q 'requires an importance matrix' "$qlog" && why="llama-quantize needs an importance matrix for it"
      row "≈$(class_of "$type") | $name | - | $why | | | "
      continue
    fi
    row "≈$(class_of "$type") | $name | $(linear_bpw "$out") | $(score "$out" "$tag") | $(time_of "$qlog") | $(rss_of "$qlog")"
  done
done
for spec in $OURS; do
  IFS='|' read -r cls name path wall rss <<< "$spec"
  [[ -f "$path" ]] || { echo "skipping $name: $path not found" >&2; continue; }
  tag="ours-$(basename "$path" .gguf)"
  row "≈$cls | elutq ${name//_/ } | $(linear_bpw "$path") | $(score "$path" "$tag") | ${wall:--} | ${rss:--}"
done
cat "$table"
[[ "$UPDATE_DOCS" == 1 ]] || exit 0
# Rows this run measured replace those of the same file; the others stay, each row saying when and
# where it was measured. Sorted by class, then bits per weight.
python3 - "$ROOT/scripts/lib" "$ROOT/docs/RESULTS.md" "$table" \
  "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" "$THREADS" "$WINDOWS" \
  "$(git -C "$ROOT" rev-parse --short HEAD)" <<'PY'
import sys, datetime
sys.path.insert(0, sys.argv[1])
from results_table import splice_rows
doc, table, cpu, threads, windows, commit = sys.argv[2:]
def order(c):
    try:
        bpw = float(c[2])
    except ValueError:
        bpw = 99.0
    return (c[0] != "source", c[0], bpw, c[1])
splice_rows(doc, "vs-llamacpp", open(table).read(),
            ["| class | file | bpw, linear layers | WikiText-2 ppl | C4 ppl | quantize wall s | peak RSS MiB | measured |",
             "|---|---|---:|---:|---:|---:|---:|---|"],
            7, key=lambda c: c[1], sort_key=order,
            when=f"{datetime.date.today()}, {cpu}, {threads} thr, {windows} windows, elutq {commit}")
PY
echo "docs/RESULTS.md updated" >&2
