#!/usr/bin/env bash
# Installs the system packages Dolmen's build needs, only when missing:
# libclang (RocksDB's bindgen) and a C++ compiler (RocksDB itself).
set -euo pipefail

missing=()
ldconfig -p 2>/dev/null | grep -q 'libclang' || ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || missing+=(libclang-dev)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
command -v cargo >/dev/null 2>&1 || { echo "install-deps: cargo is not installed (https://rustup.rs)" >&2; exit 1; }

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
