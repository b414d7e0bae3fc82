#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine; idempotent and quiet when done already.
#   - Python: onnx, onnxruntime, numpy (PyPI) for the ONNX checker / reference-runtime tests.
#   - Debian: socat (pseudo-terminal serial links), the aarch64 cross toolchain and qemu-user
#     (Debian's rustc-web with the arm64 standard library) for the cross-built agent.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v socat >/dev/null || need_apt+=(socat)
command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64-static >/dev/null || need_apt+=(qemu-user-static)
[ -d /usr/lib/rustlib/aarch64-unknown-linux-gnu ] || need_apt+=(rustc-web libstd-rust-web-dev:arm64)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "setup: installing ${need_apt[*]}" >&2
  $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import onnx, onnxruntime, numpy' 2>/dev/null; then
  echo "setup: pip install -r scripts/requirements.txt" >&2
  "$PYTHON" -m pip install -q -r scripts/requirements.txt
fi
