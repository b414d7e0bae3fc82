#!/usr/bin/env bash
# The whole-network int8 check of a trained run, next to its float export:
#   1. `tunas export` in f32 and in i8 (activation ranges calibrated in tract on training images);
#   2. scripts/check_export.py: onnxruntime against Candle (f32) and against tract (i8: the same
#      top-1 on every test image);
#   3. each exported network's op keys profiled into a table (`tunas profile --plan`), and the
#      network itself timed end to end (`device-agent bench-model`): measured against Σ table.
# Prints one table. Usage:
#   scripts/bench/int8-check.sh RUN_DIR [OUT_DIR] [-- extra `tunas profile` flags]
# The build: cargo build --release (tunas and device-agent in target/release).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
run=${1:?usage: int8-check.sh RUN_DIR [OUT_DIR] [-- profile flags]}
shift
out=${1:-int8-check}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
profile_flags=("$@")
[ ${#profile_flags[@]} -eq 0 ] && profile_flags=(--passes 3 --pass-secs 0.5)
tunas=${TUNAS:-$root/target/release/tunas}
agent=${AGENT:-$root/target/release/device-agent}
python=${PYTHON:-python3}
mkdir -p "$out"
for p in f32 i8; do
  "$tunas" -q export --run "$run" --out "$out/$p.onnx" --precision "$p" --check-images 1000 \
    --agent "$agent" > "$out/$p.export.json"
  "$python" "$root/scripts/check_export.py" "$out/$p.onnx" > "$out/$p.ort.json" || true
  "$python" - "$out/$p.export.json" "$out/$p.plan.json" <<'EOF'
import json, sys
keys = json.load(open(sys.argv[1]))["exported_keys"]
json.dump({"count": len(set(keys)), "keys": sorted(set(keys))}, open(sys.argv[2], "w"), indent=1)
EOF
  rm -f "$out/$p.table.json" "$out/$p.table.json.journal"
  "$tunas" -q profile --plan "$out/$p.plan.json" --device local --agent "$agent" \
    --out "$out/$p.table.json" --cpus 0 "${profile_flags[@]}" >/dev/null
  "$agent" bench-model "$out/$p.onnx" --cpus 0 -q > "$out/$p.bench.json"
done
"$python" - "$out" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
print("| precision | tract top-1 | onnxruntime top-1 | ort vs reference: top-1 differs / max |Δ| | measured ms | Σ table ms | Σ / measured − 1 |")
print("|---|---|---|---|---|---|---|")
for p in ["f32", "i8"]:
    exp = json.load(open(out / f"{p}.export.json"))
    ort = json.load(open(out / f"{p}.ort.json"))
    table = json.load(open(out / f"{p}.table.json"))
    entries = {e["key"]: e for e in table["entries"]}
    total = sum(entries[k]["median"] for k in exp["exported_keys"])
    measured = json.load(open(out / f"{p}.bench.json"))["stats"]["median"]
    print(f"| {p} | {100 * exp['check']['tract']['accuracy']:.1f}% | {100 * ort['accuracy']:.1f}% "
          f"| {ort['top1_differs']} / {ort['max_abs_diff']:.3g} (vs {ort['reference']}) "
          f"| {measured / 1e3:.3f} | {total / 1e3:.3f} | {100 * (total / measured - 1):+.1f}% |")
EOF
