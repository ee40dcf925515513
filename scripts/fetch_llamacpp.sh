#!/usr/bin/env bash
# Builds llama.cpp's reference tools (llama-quantize, llama-imatrix, llama-perplexity,
# llama-bench) from the source the PyPI sdist `llama-cpp-python` carries, into a cache folder, and
# prints that folder's bin/ path. Reference tooling for side-by-side measurements only: elutq
# never links or ships it. Cached: a second run prints the path at once.
#   usage: scripts/fetch_llamacpp.sh            (env: ELUTQ_CACHE, LLAMACPP_PY_VERSION, JOBS)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${ELUTQ_CACHE:-$HOME/.cache/elutq}"
VERSION="${LLAMACPP_PY_VERSION:-0.3.36}"
DEST="$CACHE/llama.cpp-$VERSION"
BIN="$DEST/build/bin"
TOOLS=(llama-quantize llama-imatrix llama-perplexity llama-bench)
if [ -x "$BIN/llama-perplexity" ] && [ -x "$BIN/llama-quantize" ]; then
  echo "$BIN"
  exit 0
fi
mkdir -p "$DEST"
cd "$DEST"
if [ ! -d src/vendor/llama.cpp ]; then
  PY="$CACHE/venv/bin/python"
  [ -x "$PY" ] || PY=python3
  echo "downloading llama-cpp-python $VERSION (sdist) from PyPI" >&2
  "$PY" -m pip download --quiet --no-deps --no-binary llama-cpp-python -d sdist "llama-cpp-python==$VERSION" >&2
  rm -rf src.tmp && mkdir src.tmp
  tar -xzf sdist/llama_cpp_python-"$VERSION".tar.gz -C src.tmp --strip-components 1
  mv src.tmp src
fi
echo "building ${TOOLS[*]} into $DEST/build (about 10 minutes on 2 cores)" >&2
cmake -S src/vendor/llama.cpp -B build -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >&2
cmake --build build -j"${JOBS:-$(nproc)}" --target "${TOOLS[@]}" >&2
for t in "${TOOLS[@]}"; do [ -x "$BIN/$t" ] || { echo "error: $BIN/$t was not built" >&2; exit 1; }; done
echo "$BIN"
