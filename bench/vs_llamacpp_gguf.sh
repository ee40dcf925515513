#!/usr/bin/env bash
# elutq against llama.cpp on one standard GGUF file as downloaded (default: Qwen2.5-Coder-1.5B
# Q4_K_M, scripts/fetch_qwen15b.sh), in one run on one host: llama-bench beside `elutq bench -m`
# (which runs the file's K-quant tensors in place, kernels/kquant_gemm.h), decode and prefill of
# 512 tokens at each thread count, and each tool's peak resident memory (/usr/bin/time). Prints
# the CPU, the commits and a markdown table; keeps the raw outputs in WORK.
#
#   usage: bash bench/vs_llamacpp_gguf.sh [ELUTQ] [MODEL.gguf]   (default build/elutq, the 1.5B)
#   env:   THREADS="1 2"  REPS=3 (timed runs per figure)  GEN=32 (decode tokens)
#          WORK=~/.cache/elutq/vs-llamacpp-gguf
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ELUTQ="${1:-$ROOT/build/elutq}"
MODEL="${2:-$(bash "$ROOT/scripts/fetch_qwen15b.sh")}"
THREADS="${THREADS:-1 2}"
REPS="${REPS:-3}"
GEN="${GEN:-32}"
WORK="${WORK:-$HOME/.cache/elutq/vs-llamacpp-gguf}"
[ -x "$ELUTQ" ] || { echo "error: no elutq binary at $ELUTQ (build first, or pass its path)" >&2; exit 2; }
[ -f "$MODEL" ] || { echo "error: no model file at $MODEL" >&2; exit 2; }
BIN="$(bash "$ROOT/scripts/fetch_llamacpp.sh")"
RUN="$WORK/run-$(date -u +%Y%m%dT%H%M%S)"
mkdir -p "$RUN"

{
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "model: $MODEL ($(stat -c %s "$MODEL") bytes)"
  echo "elutq: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "llama.cpp: $("$BIN/llama-bench" --version 2>&1 | head -1 || true)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$RUN/host.txt" >&2

TLIST="$(echo "$THREADS" | tr ' ' ',')"
echo "llama-bench (threads $TLIST)" >&2
/usr/bin/time -v -o "$RUN/llama.time" "$BIN/llama-bench" -m "$MODEL" -p 512 -n "$GEN" -t "$TLIST" \
  -r "$REPS" -o json >"$RUN/llama.json" 2>"$RUN/llama.log"
for th in $THREADS; do
  echo "elutq bench, $th thread(s)" >&2
  /usr/bin/time -v -o "$RUN/elutq.t$th.time" "$ELUTQ" bench -m "$MODEL" --threads "$th" \
    --runs "$REPS" --decode-tokens "$GEN" --prefill-runs "$REPS" --prefill-tokens 512 \
    >"$RUN/elutq.t$th.txt" 2>&1
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RUN/host.txt" >&2

python3 - "$RUN" "$THREADS" <<'EOF'
import json, re, sys
run, threads = sys.argv[1], [int(t) for t in sys.argv[2].split()]
def rss_mib(path):
    kb = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(path).read()).group(1)
    return int(kb) / 1024
llama = {}
for r in json.load(open(f"{run}/llama.json")):
    llama[(r["n_threads"], "pp" if r["n_prompt"] > 0 else "tg")] = r["avg_ts"]
print("| threads | decode tok/s, elutq / llama.cpp (ratio) | elutq decode of roofline "
      "| prefill 512 tok/s, elutq / llama.cpp (ratio) | peak RSS MiB, elutq / llama-bench |")
print("|---|---|---|---|---|")
for th in threads:
    text = open(f"{run}/elutq.t{th}.txt").read()
    d = re.search(r"^decode: ([\d.]+) tok/s.*?(\d+)% of the roofline", text, re.M)
    p = re.search(r"^prefill \(512 tokens\): ([\d.]+) tok/s", text, re.M)
    dec, roof, pre = float(d.group(1)), int(d.group(2)), float(p.group(1))
    ld, lp = llama[(th, "tg")], llama[(th, "pp")]
    print(f"| {th} | {dec:.2f} / {ld:.2f} ({dec / ld:.2f}x) | {roof}% | {pre:.2f} / {lp:.2f} "
          f"({pre / lp:.2f}x) | {rss_mib(f'{run}/elutq.t{th}.time'):.0f} / "
          f"{rss_mib(f'{run}/llama.time'):.0f} |")
EOF
echo "raw outputs: $RUN" >&2
