#!/usr/bin/env bash
# elutq against llama.cpp at LLaMA-2-7B shapes, in one run on one host: llama-bench on a
# random-weight 7B-shaped GGUF quantized to Q2_K, Q3_K_S, Q4_0 and Q4_K_S, beside
# `elutq bench --synthetic llama2-7b --full` (random weights at the same shapes, the whole forward
# pass) for hlq-w2g128, hlq-w3g128, hlq-w4g128 and uniform-w4g128; decode and prefill of 512
# tokens at each thread count. Prints the CPU, the commits and a markdown table with each elutq
# format's ratio to the llama.cpp type at the nearest width, and keeps the raw outputs in WORK.
#
# llama.cpp is reference tooling (scripts/fetch_llamacpp.sh builds it into the cache); the F16
# model (13.5 GB) and its quantized copies are made once and kept in WORK.
#
#   usage: bash bench/vs_llamacpp.sh [ELUTQ]        (default build/elutq)
#   env:   THREADS="1 2"  REPS=2 (timed runs per figure)  GEN=32 (decode tokens)
#          WORK=~/.cache/elutq/vs-llamacpp
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ELUTQ="${1:-$ROOT/build/elutq}"
THREADS="${THREADS:-1 2}"
REPS="${REPS:-2}"
GEN="${GEN:-32}"
WORK="${WORK:-$HOME/.cache/elutq/vs-llamacpp}"
[ -x "$ELUTQ" ] || { echo "error: no elutq binary at $ELUTQ (build first, or pass its path)" >&2; exit 2; }
BIN="$(bash "$ROOT/scripts/fetch_llamacpp.sh")"
mkdir -p "$WORK"
RUN="$WORK/run-$(date -u +%Y%m%dT%H%M%S)"
mkdir -p "$RUN"

F16="$WORK/llama2-7b-shapes.f16.gguf"
if [ ! -f "$F16" ]; then
  echo "writing a random-weight LLaMA-2-7B-shaped F16 model (13.5 GB) to $F16" >&2
  "$ELUTQ" synth-model --dim 4096 --layers 32 --ffn 11008 --vocab 32000 --heads 32 --ctx 4096 \
    -o "$F16.tmp"
  mv "$F16.tmp" "$F16"
fi
LLAMA_TYPES=(Q2_K Q3_K_S Q4_0 Q4_K_S)
for t in "${LLAMA_TYPES[@]}"; do
  out="$WORK/llama2-7b-shapes.$t.gguf"
  if [ ! -f "$out" ]; then
    echo "llama-quantize $t" >&2
    "$BIN/llama-quantize" "$F16" "$out.tmp" "$t" >"$WORK/quantize.$t.log" 2>&1 ||
      { echo "error: llama-quantize $t failed, see $WORK/quantize.$t.log" >&2; exit 1; }
    mv "$out.tmp" "$out"
  fi
done

{
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "elutq: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "llama.cpp: $("$BIN/llama-bench" --version 2>&1 | head -1 || true)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$RUN/host.txt" >&2

TLIST="$(echo "$THREADS" | tr ' ' ',')"
for t in "${LLAMA_TYPES[@]}"; do
  echo "llama-bench $t (threads $TLIST)" >&2
  if ! "$BIN/llama-bench" -m "$WORK/llama2-7b-shapes.$t.gguf" -p 512 -n "$GEN" -t "$TLIST" \
      -r "$REPS" -o json >"$RUN/llama.$t.json" 2>"$RUN/llama.$t.log"; then
    # ggml 0.25.3 (llama-cpp-python 0.3.36) crashes in its repacked Q4_0 path on the Sapphire
    # Rapids host; its plain path is then what runs, and the table says so.
    echo "llama-bench $t failed with the weights repacked; again with --repack 0" >&2
    echo "$t" >>"$RUN/no_repack.txt"
    "$BIN/llama-bench" -m "$WORK/llama2-7b-shapes.$t.gguf" -p 512 -n "$GEN" -t "$TLIST" \
      -r "$REPS" --repack 0 -o json >"$RUN/llama.$t.json" 2>"$RUN/llama.$t.log"
  fi
done
ELUTQ_FORMATS=(hlq-w2g128 hlq-w3g128 hlq-w4g128 uniform-w4g128)
for f in "${ELUTQ_FORMATS[@]}"; do
  for th in $THREADS; do
    echo "elutq bench $f, $th thread(s)" >&2
    "$ELUTQ" bench --synthetic llama2-7b --full --format "$f" --threads "$th" --runs "$REPS" \
      --prefill-runs "$REPS" --prefill-tokens 512 >"$RUN/elutq.$f.t$th.txt" 2>&1
  done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RUN/host.txt" >&2

python3 - "$RUN" "$THREADS" <<'EOF'
import json, os, re, sys
run, threads = sys.argv[1], [int(t) for t in sys.argv[2].split()]
llama = {}  # (type, threads, "pp"/"tg") -> tok/s; type -> bpw of the whole file
bpw = {}
for t in ["Q2_K", "Q3_K_S", "Q4_0", "Q4_K_S"]:
    for r in json.load(open(f"{run}/llama.{t}.json")):
        kind = "pp" if r["n_prompt"] > 0 else "tg"
        llama[(t, r["n_threads"], kind)] = r["avg_ts"]
        bpw[t] = 8.0 * r["model_size"] / r["model_n_params"]
ours = {}
for f in ["hlq-w2g128", "hlq-w3g128", "hlq-w4g128", "uniform-w4g128"]:
    for th in threads:
        text = open(f"{run}/elutq.{f}.t{th}.txt").read()
        d = re.search(r"^decode: ([\d.]+) tok/s.*?(\d+)% of the roofline", text, re.M)
        p = re.search(r"^prefill \(512 tokens\): ([\d.]+) tok/s", text, re.M)
        ours[(f, th)] = (float(d.group(1)), int(d.group(2)), float(p.group(1)))
no_repack = set(open(f"{run}/no_repack.txt").read().split()) if os.path.exists(
    f"{run}/no_repack.txt") else set()
pairs = {"hlq-w2g128": "Q2_K", "hlq-w3g128": "Q3_K_S", "hlq-w4g128": "Q4_K_S",
         "uniform-w4g128": "Q4_0"}
print("| elutq format | llama.cpp type (file bpw) | threads | decode tok/s, elutq / llama.cpp "
      "(ratio) | elutq decode of roofline | prefill 512 tok/s, elutq / llama.cpp (ratio) |")
print("|---|---|---|---|---|---|")
for f, t in pairs.items():
    for th in threads:
        d, roof, p = ours[(f, th)]
        ld, lp = llama[(t, th, "tg")], llama[(t, th, "pp")]
        note = ", --repack 0" if t in no_repack else ""
        print(f"| {f} | {t} ({bpw[t]:.2f}{note}) | {th} | {d:.2f} / {ld:.2f} ({d / ld:.2f}x) | {roof}% "
              f"| {p:.2f} / {lp:.2f} ({p / lp:.2f}x) |")
EOF
echo "raw outputs: $RUN" >&2
