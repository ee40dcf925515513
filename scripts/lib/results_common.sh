# Shared by the scripts/results_*.sh scripts (sourced, not run): the data files, the C4 split,
# and perplexity runs cached as logs. Expects ELUTQ, SHARED, WORK and THREADS to be set.

WIKI="$SHARED/data/wikitext-2-raw/wiki.test.raw"
C4="$SHARED/data/c4/c4_validation_2k.jsonl"

# Checks that the binary and the data exist, makes $WORK and writes the C4 split into it:
# documents 1..1000 calibrate ($WORK/c4_calib.jsonl), 1001..2000 are held out for evaluation
# ($WORK/c4_heldout.jsonl). A split file is rewritten only when it differs: its identity (size,
# mtime) is part of a quantize run's manifest, so touching it would void every kept run.
results_setup() {
  [[ -x "$ELUTQ" ]] || { echo "error: $ELUTQ not built (scripts/build.sh)" >&2; exit 1; }
  local f
  for f in "$WIKI" "$C4" "$@"; do [[ -f "$f" ]] || { echo "error: missing $f" >&2; exit 1; }; done
  mkdir -p "$WORK"
  head -n 1000 "$C4" > "$WORK/c4_calib.jsonl.new"
  tail -n +1001 "$C4" > "$WORK/c4_heldout.jsonl.new"
  for f in c4_calib.jsonl c4_heldout.jsonl; do
    if cmp -s "$WORK/$f.new" "$WORK/$f"; then rm -f "$WORK/$f.new"; else mv "$WORK/$f.new" "$WORK/$f"; fi
  done
}

# The perplexity an `elutq perplexity` log ends with (empty if none).
ppl_of() { sed -n 's/^ppl \([0-9.eE+-]*\) .*/\1/p' "$1" 2>/dev/null | tail -1; }

# evaluate FILE CTX WINDOWS TAG: WikiText-2 test and held-out C4 perplexity of FILE into
# $WORK/TAG.wiki.log and $WORK/TAG.c4.log, each skipped when its log already has a result.
evaluate() {
  local file="$1" ctx="$2" win="$3" tag="$4"
  [[ -n "$(ppl_of "$WORK/$tag.wiki.log")" ]] ||
    "$ELUTQ" perplexity -m "$file" -f "$WIKI" --lines -c "$ctx" --max-windows "$win" -q \
      -t "$THREADS" > "$WORK/$tag.wiki.log" 2>&1
  [[ -n "$(ppl_of "$WORK/$tag.c4.log")" ]] ||
    "$ELUTQ" perplexity -m "$file" -f "$WORK/c4_heldout.jsonl" -c "$ctx" --max-windows "$win" \
      -q -t "$THREADS" > "$WORK/$tag.c4.log" 2>&1
}
