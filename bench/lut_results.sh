#!/usr/bin/env bash
# The "LUT kernels" numbers of docs/RESULTS.md: synthetic LLaMA-2-7B linear layers at HLQ w2/w3/w4
# g128 and uniform w4g128, decode and prefill, 1 and 2 threads. usage: bench/lut_results.sh [BUILD]
set -euo pipefail
BUILD="${1:-$(cd "$(dirname "$0")/.." && pwd)/build}"
for threads in 2 1; do
  for format in hlq-w2g128 hlq-w3g128 hlq-w4g128 uniform-w4g128; do
    tokens=512
    [ "$threads" = 1 ] && tokens=64  # prefill is compute-bound: the rate barely depends on tokens
    echo "== $format, $threads threads (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    "$BUILD/elutq" bench --synthetic llama2-7b --format "$format" --threads "$threads" \
      --runs 5 --prefill-tokens "$tokens" --prefill-runs 1 | tail -4
  done
done
