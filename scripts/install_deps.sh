#!/usr/bin/env bash
# Installs the Debian packages elutq builds and tests with. Safe to run again: installs only what
# is missing. Needs root (or sudo) the first time.
set -euo pipefail
PKGS=(build-essential cmake pkg-config ccache libgtest-dev libgmock-dev libbenchmark-dev
      libopenblas-dev liblapacke-dev libpcre2-dev nlohmann-json3-dev libcli11-dev libcpp-httplib-dev
      clang libclang-rt-14-dev
      g++-aarch64-linux-gnu qemu-user python3 python3-venv unzip)
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
