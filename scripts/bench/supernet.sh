#!/usr/bin/env bash
# Supernet training-step time, Candle vs PyTorch, on the same sampled architectures.
#
#   scripts/bench/supernet.sh [--steps N] [--archs K] [--width W] [--threads T]
#
# For batch 64 and 128: runs the Candle bench (`cargo bench -p host --bench supernet`), which
# dumps the supernet spec and the architectures it sampled, then the PyTorch twin
# (scripts/bench/supernet_torch.py) on that spec; prints both tables and a comparison table.
# Both run with T threads (default 2): RAYON_NUM_THREADS for Candle, torch.set_num_threads for
# PyTorch. PYTHON=/path/to/python chooses the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/../.."

STEPS=5
ARCHS=4
WIDTH=0.25
THREADS=2
PY=${PYTHON:-python3}

usage() {
    sed -n '2,10s/^# \{0,1\}//p' "$0"
    exit "${1:-0}"
}

while [[ $# -gt 0 ]]; do
    case $1 in
        --steps) STEPS=${2:?--steps needs a value}; shift 2 ;;
        --archs) ARCHS=${2:?--archs needs a value}; shift 2 ;;
        --width) WIDTH=${2:?--width needs a value}; shift 2 ;;
        --threads) THREADS=${2:?--threads needs a value}; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "supernet.sh: unknown argument $1" >&2; usage 2 >&2 ;;
    esac
done

if ! "$PY" -c 'import torch' >/dev/null 2>&1; then
    cat >&2 <<EOF
supernet.sh: PyTorch is not importable with '$PY'.
  Install it (CPU build is enough):  $PY -m pip install torch
  or choose another interpreter:     PYTHON=/path/to/venv/bin/python $0 ...
EOF
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# "| fw | batch | all | step | fwd |" → "step fwd"; "peak RSS: N MB" → "N".
summary() { awk -F'|' '$4 ~ /^ *all *$/ { gsub(/ /, "", $5); gsub(/ /, "", $6); print $5, $6 }' "$1"; }
rss() { awk '/^peak RSS:/ { print $3 }' "$1"; }

rows=()
for b in 64 128; do
    echo "== batch $b: candle ==" >&2
    RAYON_NUM_THREADS=$THREADS cargo bench -p host --bench supernet -- \
        --batch "$b" --steps "$STEPS" --archs "$ARCHS" --width "$WIDTH" --dump "$tmp/spec.json" \
        | tee "$tmp/candle-$b.md"
    echo "== batch $b: pytorch ==" >&2
    "$PY" scripts/bench/supernet_torch.py --spec "$tmp/spec.json" --batch "$b" --steps "$STEPS" \
        --threads "$THREADS" | tee "$tmp/torch-$b.md"
    c_step='' c_fwd='' t_step='' t_fwd=''
    read -r c_step c_fwd < <(summary "$tmp/candle-$b.md") || true
    read -r t_step t_fwd < <(summary "$tmp/torch-$b.md") || true
    if [[ -z $c_step || -z $t_step ]]; then
        echo "supernet.sh: could not find the summary row of batch $b" >&2
        exit 1
    fi
    ratio=$(awk -v c="$c_step" -v t="$t_step" 'BEGIN { printf "%.2f", c / t }')
    rows+=("| $b | $c_step | $t_step | $ratio | $c_fwd | $t_fwd | $(rss "$tmp/candle-$b.md") | $(rss "$tmp/torch-$b.md") |")
done

echo
echo "supernet step, width ×$WIDTH, $ARCHS architectures × $STEPS timed steps (+1 warm-up each), $THREADS threads"
echo
echo "| batch | candle step ms | pytorch step ms | ratio candle/pytorch | candle fwd ms | pytorch fwd ms | candle peak RSS MB | pytorch peak RSS MB |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
