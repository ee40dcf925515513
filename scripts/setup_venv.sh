#!/usr/bin/env bash
# Creates the Python venv used only by the reference checks in tests/reference (HF transformers,
# tokenizers, sentencepiece, gguf). elutq itself never needs Python.
#
# Fast when already set up: one import check, then exit. Otherwise installs from PyPI only.
#
# Lean torch: every Linux x86_64 torch wheel on PyPI is a CUDA build whose dependencies are
# ~2.3 GB of nvidia-*/cuda-*/triton wheels (5.3 GB installed). We install the torch wheel alone
# (--no-deps) with its pure-Python dependencies, and tests/reference/make_torch_cuda_stubs.py
# builds tiny stub libraries for the CUDA libraries it links, so `import torch` works and all
# computation runs on the unmodified CPU kernels (torch.cuda.is_available() is False).
# Measured (2 cores, torch 2.15.0, transformers 5.23.0): torch wheel 539 MB download, venv 1.6 GB
# installed, set-up from nothing 55-60 s on a fast link; the default route downloads 2.8 GB and
# installs ~6.5 GB (5.3 GB of it CUDA). Re-running when already set up: ~2 s.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${ELUTQ_VENV:-$HOME/.cache/elutq/venv}"
TORCH_VERSION=2.15.0
TRANSFORMERS_VERSION=5.23.0
PKGS=(numpy gguf tokenizers sentencepiece safetensors jinja2 openai)
# torch's own pure-Python dependencies (its CUDA ones are deliberately left out, see above).
TORCH_PY_DEPS=(filelock typing-extensions sympy networkx jinja2 fsspec)

check() {
  "$VENV/bin/python" - "$TORCH_VERSION" "$TRANSFORMERS_VERSION" <<'EOF' 2>/dev/null
import sys
import numpy, gguf, tokenizers, sentencepiece, safetensors, jinja2, openai
import torch, transformers
assert torch.__version__.split("+")[0] == sys.argv[1], torch.__version__
assert transformers.__version__ == sys.argv[2], transformers.__version__
assert float((torch.ones(2, 3) @ torch.ones(3, 2)).sum()) == 12.0
EOF
}

if [ -x "$VENV/bin/python" ] && check; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
# transformers does not depend on torch (only its "torch" extra does), so this pulls no CUDA.
"${PIP[@]}" "${PKGS[@]}" "${TORCH_PY_DEPS[@]}" "transformers==$TRANSFORMERS_VERSION"
# torch last and alone, so no later resolver run asks for its CUDA dependencies.
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; \
sys.exit(m.version('torch') != '$TORCH_VERSION')" 2>/dev/null; then
  "${PIP[@]}" --no-deps --no-cache-dir "torch==$TORCH_VERSION"
fi
TORCH_DIR="$("$VENV/bin/python" -c "import importlib.util as u; import os; \
print(os.path.dirname(u.find_spec('torch').origin))")"
"$VENV/bin/python" "$ROOT/tests/reference/make_torch_cuda_stubs.py" "$TORCH_DIR" >/dev/null
if ! check; then
  echo "setup_venv.sh: the reference venv at $VENV is still not usable; run:" >&2
  echo "  $VENV/bin/python -c 'import torch, transformers'   to see why" >&2
  exit 1
fi
