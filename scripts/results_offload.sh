#!/usr/bin/env bash
# Disk-offload measurement for docs/notes/2026-11-23-disk-offload.md: quantizes a synthetic LLaMA
# model whose fp16 weights are several times the memory budget, with calibration, three ways:
#   A  no --mem-budget (everything in memory)
#   B  --mem-budget BUDGET (one block in memory, activations on disk when they do not fit)
#   C  like B, killed with SIGKILL after KILL_AFTER finished blocks, then restarted (resume)
# and checks that B and C produce byte-identical files to A. Peak RSS is measured from outside
# (GNU time's "Maximum resident set size") as well as reported by elutq itself.
#
# usage: scripts/results_offload.sh            (env: see the defaults below)
# Heavy: run it niced on a quiet machine; it deletes its big files at the end (KEEP=1 keeps them).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ELUTQ="${ELUTQ:-$ROOT/build/elutq}"
WORK="${WORK:-/tmp/elutq-offload}"
DIM="${DIM:-512}" FFN="${FFN:-1536}" LAYERS="${LAYERS:-96}" VOCAB="${VOCAB:-128000}"
METHOD="${METHOD:-gptq}" BITS="${BITS:-2}" GROUP="${GROUP:-128}"
NSAMPLES="${NSAMPLES:-4}" SEQLEN="${SEQLEN:-128}" THREADS="${THREADS:-2}"
BUDGET="${BUDGET:-256M}"
KILL_AFTER="${KILL_AFTER:-30}"
CALIB="${CALIB:-$ROOT/../shared/data/wikitext-2-raw/wiki.test.raw}"
[ -f "$CALIB" ] || CALIB=/work/shared/data/wikitext-2-raw/wiki.test.raw
[ -x "$ELUTQ" ] || { echo "build elutq first (scripts/build.sh)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs GNU time (/usr/bin/time)" >&2; exit 1; }

mkdir -p "$WORK"
MODEL="$WORK/synth.gguf"
echo "== disk space before"; df -h "$WORK" | tail -1

echo "== synthesize: dim $DIM, ffn $FFN, $LAYERS layers, vocab $VOCAB"
"$ELUTQ" synth-model --dim "$DIM" --ffn "$FFN" --layers "$LAYERS" --vocab "$VOCAB" -o "$MODEL"
MODEL_BYTES=$(stat -c %s "$MODEL")

QARGS=(--method "$METHOD" --bits "$BITS" --group "$GROUP" --calib "$CALIB" --nsamples "$NSAMPLES"
       --seqlen "$SEQLEN" --threads "$THREADS")

# run NAME OUT [extra args]: runs elutq quantize under GNU time; leaves NAME.log and NAME.time.
run() {
  local name="$1" out="$2"; shift 2
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$WORK/$name.time" "$ELUTQ" quantize "$MODEL" "$out" "${QARGS[@]}" "$@" \
    >"$WORK/$name.log" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  echo "$t0 $t1" >"$WORK/$name.wall"
  return $rc
}
peak_mib() { awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$WORK/$1.time"; }
wall_s() { awk '{printf "%.0f", $2-$1}' "$WORK/$1.wall"; }

echo "== A: in memory (no budget)"
run A "$WORK/A.elutq"
echo "== B: --mem-budget $BUDGET"
run B "$WORK/B.elutq" --mem-budget "$BUDGET"

echo "== C: --mem-budget $BUDGET, killed after $KILL_AFTER blocks, restarted"
t0=$(date +%s.%N)
/usr/bin/time -v -o "$WORK/C1.time" "$ELUTQ" quantize "$MODEL" "$WORK/C.elutq" "${QARGS[@]}" \
  --mem-budget "$BUDGET" >"$WORK/C1.log" 2>&1 &
PID=$!
while kill -0 "$PID" 2>/dev/null; do
  n=$(ls "$WORK/C.elutq.elutq-work/" 2>/dev/null | grep -c '^block-.*\.ckpt$' || true)
  if [ "$n" -ge "$KILL_AFTER" ]; then
    # GNU time's child is elutq: kill that one, hard, as a crash or an OOM kill would.
    pkill -KILL -P "$PID" || true
    break
  fi
  sleep 0.5
done
wait "$PID" 2>/dev/null || true
t1=$(date +%s.%N); echo "$t0 $t1" >"$WORK/C1.wall"
done_blocks=$(ls "$WORK/C.elutq.elutq-work/" | grep -c '^block-.*\.ckpt$' || true)
[ -e "$WORK/C.elutq" ] && { echo "the killed run left a finished file" >&2; exit 1; }
echo "killed with $done_blocks blocks checkpointed"
run C2 "$WORK/C.elutq" --mem-budget "$BUDGET"

same() { cmp -s "$1" "$2" && echo identical || echo DIFFERENT; }
AB=$(same "$WORK/A.elutq" "$WORK/B.elutq")
AC=$(same "$WORK/A.elutq" "$WORK/C.elutq")
mib() { awk -v b="$1" 'BEGIN {printf "%.0f", b/1048576}'; }

echo
echo "### Disk offload: $(mib "$MODEL_BYTES") MiB synthetic model, --mem-budget $BUDGET"
echo
echo "model: synthetic LLaMA, dim $DIM, ffn $FFN, $LAYERS layers, vocab $VOCAB, F16 ($(mib "$MODEL_BYTES") MiB file);"
echo "quantize: --method $METHOD --bits $BITS --group $GROUP, calibration $NSAMPLES x $SEQLEN tokens, $THREADS threads"
echo
echo "| run | --mem-budget | peak RSS (GNU time) | wall | output vs A |"
echo "|---|---|---|---|---|"
echo "| A in memory | none | $(peak_mib A) MiB | $(wall_s A) s | - |"
echo "| B streaming | $BUDGET | $(peak_mib B) MiB | $(wall_s B) s | $AB |"
echo "| C killed after $done_blocks blocks | $BUDGET | $(peak_mib C1) MiB | $(wall_s C1) s | - |"
echo "| C restarted (resumes) | $BUDGET | $(peak_mib C2) MiB | $(wall_s C2) s | $AC |"
echo
echo "elutq's own report lines (B, C restarted):"
grep -iE "peak|budget|resum|spill|activation" "$WORK/B.log" "$WORK/C2.log" | sed 's/^/    /' || true
echo "== disk space after"; df -h "$WORK" | tail -1
if [ "${KEEP:-0}" != 1 ]; then rm -rf "$WORK"; fi
[ "$AB" = identical ] && [ "$AC" = identical ]
