#!/usr/bin/env bash
# Cross-compiles the kernel tests for aarch64 (Debian g++-aarch64-linux-gnu) and runs them under
# qemu-user: the NEON path (with and without the dot-product extension) against the scalar
# reference. usage: scripts/test_arm.sh [BUILD_DIR]   (default build-arm; skips with a message if
# the cross compiler or qemu-aarch64 is missing)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${1:-$ROOT/build-arm}"
for tool in aarch64-linux-gnu-g++ qemu-aarch64; do
  if ! command -v "$tool" >/dev/null; then
    echo "test_arm.sh: $tool not found; install g++-aarch64-linux-gnu and qemu-user to run the ARM tests" >&2
    exit 0
  fi
done
cmake -S "$ROOT/cmake/arm_kernel_tests" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$ROOT/cmake/aarch64-toolchain.cmake" >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
run() { qemu-aarch64 -L /usr/aarch64-linux-gnu "$BUILD/elutq_arm_kernel_tests" "$@"; }
echo "== NEON with dot product (qemu cpu 'max') =="
QEMU_CPU=max run
echo "== NEON without dot product (qemu cpu cortex-a72) =="
QEMU_CPU=cortex-a72 run --gtest_filter='LutKernels.EverySimdPath*'
