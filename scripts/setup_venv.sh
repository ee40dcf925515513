#!/usr/bin/env bash
# Creates the Python venv used only by the reference checks in tests/reference (HF transformers,
# tokenizers, sentencepiece, gguf). elutq itself never needs Python.
set -euo pipefail
VENV="${ELUTQ_VENV:-$HOME/.cache/elutq/venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check numpy gguf tokenizers sentencepiece safetensors jinja2
