#!/bin/sh
# Runs one Python reference test with the reference venv's python (CTest calls this), or skips it
# (exit 77) when that venv does not exist yet, e.g. scripts/setup_venv.sh failed or was not run.
# usage: run_reference.sh VENV_PYTHON TEST.py [ARGS...]
py="$1"
shift
if [ ! -x "$py" ]; then
  echo "reference venv python '$py' not found (run scripts/setup_venv.sh); skipping"
  exit 77
fi
exec "$py" "$@"
