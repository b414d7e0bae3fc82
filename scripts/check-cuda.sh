#!/usr/bin/env bash
# Type-checks the host with Candle's CUDA backend (`--features cuda`, what `--device cuda` needs)
# on a machine without a GPU or a CUDA install:
#
#   scripts/check-cuda.sh [--compute-cap 90]
#
# Installs a CUDA 13.0 compiler toolchain from PyPI (nvcc, headers; about 300 MB) into
# ~/.cache/tunas-cuda once, then runs `cargo check -p host --features cuda --all-targets` in
# target/cuda (candle-kernels compiles its kernels with nvcc: about 5 minutes on 2 cores).
# Linking and running need the NVIDIA driver (libcuda) and the cuBLAS/cuRAND/NVRTC libraries:
# on a GPU machine, `cargo build --release -p host --features cuda` with its own CUDA toolkit.
set -euo pipefail
cd "$(dirname "$0")/.."

CAP=90
while [[ $# -gt 0 ]]; do
    case $1 in
        --compute-cap) CAP=${2:?--compute-cap needs a value}; shift 2 ;;
        -h|--help) sed -n '2,11s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "check-cuda.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

ROOT=${TUNAS_CUDA_HOME:-$HOME/.cache/tunas-cuda}
if [[ ! -x $ROOT/cuda/bin/nvcc ]]; then
    echo "check-cuda.sh: installing the CUDA 13.0 compiler from PyPI into $ROOT" >&2
    python3 -m venv "$ROOT/venv"
    "$ROOT/venv/bin/pip" install -q nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 \
        nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85
    # The wheels unpack into one CUDA-shaped folder; nvcc finds its root two levels above it.
    cu=$("$ROOT/venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
    rm -rf "$ROOT/cuda"
    mkdir -p "$ROOT/cuda/lib64"
    ln -s "$cu/bin" "$ROOT/cuda/bin"
    ln -s "$cu/include" "$ROOT/cuda/include"
    ln -s "$cu/nvvm" "$ROOT/cuda/nvvm"
    for f in "$cu"/lib/*; do ln -s "$f" "$ROOT/cuda/lib64/"; done
    ln -s lib64 "$ROOT/cuda/lib"
fi
export CUDA_HOME=$ROOT/cuda CUDA_ROOT=$ROOT/cuda CUDA_PATH=$ROOT/cuda
export PATH=$ROOT/cuda/bin:$PATH
# No GPU to ask (nvidia-smi): the kernels' target. 90 = H100/H200; 80 runs on any GPU from 8.0.
export CUDA_COMPUTE_CAP=$CAP CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-$(nproc)}
nvcc --version | tail -2 >&2
cargo check -p host --features cuda --all-targets --target-dir target/cuda
echo "check-cuda.sh: host type-checks with --features cuda (compute capability $CAP)" >&2
