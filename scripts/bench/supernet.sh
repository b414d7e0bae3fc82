#!/usr/bin/env bash
# Supernet training-step time, Candle vs PyTorch, on the same sampled architectures.
#
#   scripts/bench/supernet.sh [--steps N] [--archs K] [--width "0.25 0.5"] [--batch "32 64 128"] [--threads T] [--masked] [--device cpu|cuda]
#
# For every width and batch: runs the Candle bench (`cargo bench -p host --bench supernet`),
# which dumps the supernet spec and the architectures it sampled, then the PyTorch twin
# (scripts/bench/supernet_torch.py) on that spec; prints both tables and one comparison table
# (training step and forward-only pass, images/s, peak RSS).
# Both run with T threads (default 2): RAYON_NUM_THREADS for Candle, torch.set_num_threads for
# PyTorch. PYTHON=/path/to/python chooses the interpreter (default python3). Both time the
# plain network sliced to the selected widths (what the search runs for one-hot selections);
# --masked times the masked formulation (every layer at its largest width) in both instead.
# --device cuda runs both on the GPU (the Candle bench built with --features cuda).
set -euo pipefail
cd "$(dirname "$0")/../.."

STEPS=5
ARCHS=4
WIDTHS="0.25 0.5"
BATCHES="32 64 128"
THREADS=2
MASKED=0
DEVICE=cpu
PY=${PYTHON:-python3}

usage() {
    sed -n '2,14s/^# \{0,1\}//p' "$0"
    exit "${1:-0}"
}

while [[ $# -gt 0 ]]; do
    case $1 in
        --steps) STEPS=${2:?--steps needs a value}; shift 2 ;;
        --archs) ARCHS=${2:?--archs needs a value}; shift 2 ;;
        --width) WIDTHS=${2:?--width needs a value}; shift 2 ;;
        --batch) BATCHES=${2:?--batch needs a value}; shift 2 ;;
        --threads) THREADS=${2:?--threads needs a value}; shift 2 ;;
        --masked) MASKED=1; shift ;;
        --device) DEVICE=${2:?--device needs a value}; shift 2 ;;
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

# "| fw | batch | all | step | fwd | eval |" → "step fwd eval"; "peak RSS: N MB" → "N".
summary() { awk -F'|' '$4 ~ /^ *all *$/ { gsub(/ /, "", $5); gsub(/ /, "", $6); gsub(/ /, "", $7); print $5, $6, $7 }' "$1"; }
rss() { awk '/^peak RSS:/ { print $3 }' "$1"; }
ips() { awk -v b="$1" -v ms="$2" 'BEGIN { printf "%.0f", b / ms * 1000 }'; }

features=()
[[ $DEVICE == cpu ]] || features=(--features cuda)
rows=()
for w in $WIDTHS; do
    for b in $BATCHES; do
        echo "== width $w, batch $b: candle ==" >&2
        RAYON_NUM_THREADS=$THREADS cargo bench -q -p host "${features[@]}" --bench supernet -- \
            --batch "$b" --steps "$STEPS" --archs "$ARCHS" --width "$w" --dump "$tmp/spec.json" --masked "$MASKED" \
            --device "$DEVICE" \
            | tee "$tmp/candle.md"
        echo "== width $w, batch $b: pytorch ==" >&2
        torch_mode=()
        [[ $MASKED == 1 ]] && torch_mode=(--masked)
        "$PY" scripts/bench/supernet_torch.py --spec "$tmp/spec.json" --batch "$b" --steps "$STEPS" "${torch_mode[@]}" \
            --threads "$THREADS" --device "$DEVICE" | tee "$tmp/torch.md"
        c_step='' c_fwd='' c_eval='' t_step='' t_fwd='' t_eval=''
        read -r c_step c_fwd c_eval < <(summary "$tmp/candle.md") || true
        read -r t_step t_fwd t_eval < <(summary "$tmp/torch.md") || true
        if [[ -z $c_step || -z $t_step || -z $c_eval || -z $t_eval ]]; then
            echo "supernet.sh: could not find the summary row of width $w batch $b" >&2
            exit 1
        fi
        ratio=$(awk -v c="$c_step" -v t="$t_step" 'BEGIN { printf "%.2f", c / t }')
        eratio=$(awk -v c="$c_eval" -v t="$t_eval" 'BEGIN { printf "%.2f", c / t }')
        rows+=("| $w | $b | $c_step | $t_step | $ratio | $c_eval | $t_eval | $eratio | $(ips "$b" "$c_eval") | $(ips "$b" "$t_eval") | $(rss "$tmp/candle.md") | $(rss "$tmp/torch.md") |")
    done
done

echo
echo "supernet, $ARCHS architectures × $STEPS timed steps (+1 warm-up each), $THREADS threads; step = forward + backward + RMSProp; eval = forward only"
echo
echo "| width | batch | candle step ms | pytorch step ms | step ratio | candle eval ms | pytorch eval ms | eval ratio | candle eval img/s | pytorch eval img/s | candle peak RSS MB | pytorch peak RSS MB |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
