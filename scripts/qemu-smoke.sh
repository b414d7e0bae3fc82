#!/usr/bin/env bash
# Cross-builds the aarch64 agent (CI profile) and checks it under qemu-aarch64-static:
# `info` prints a fingerprint and a two-key `bench` writes a valid table. Correctness only:
# timings under qemu mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
agent=$(bash scripts/build-agent --profile ci)
run() { qemu-aarch64-static -L /usr/aarch64-linux-gnu "$agent" "$@"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run info > "$work/info.json"
python3 - "$work/info.json" <<'PY'
import json, sys
fp = json.load(open(sys.argv[1]))
assert fp["target"] == "aarch64-unknown-linux-gnu", fp["target"]
assert fp["tract_version"], fp
print("qemu info: target", fp["target"], "libc", fp["libc"], "affinity", fp["affinity"])
PY

cargo run -q -p host --bin tunas -- plan --space proxylessnas --out "$work/plan-all.json"
python3 - "$work/plan-all.json" "$work/plan.json" <<'PY'
import json, sys
plan = json.load(open(sys.argv[1]))
keys = [k for k in plan["keys"] if k.startswith(("pool/", "fc/"))][:2]
json.dump({"space": plan["space"], "resolution": plan["resolution"], "count": len(keys), "keys": keys}, open(sys.argv[2], "w"))
PY
run bench --plan "$work/plan.json" --out "$work/table.json" \
  --warmup-runs 1 --warmup-secs 0 --runs 3 --pass-secs 0 --passes 2 --canary-every 0 > "$work/summary.json"
python3 - "$work/table.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
assert t["schema_version"] == 1 and t["units"] == "us"
assert len(t["entries"]) == 2 and not t["failures"], t
assert t["fingerprint"]["target"] == "aarch64-unknown-linux-gnu"
for e in t["entries"]:
    assert e["median"] > 0 and e["n"] >= 2, e
print("qemu bench: 2 keys measured:", ", ".join(e["key"] for e in t["entries"]))
PY

# The host drives the aarch64 agent over `exec:` (as it would `adb shell` or `ssh`).
cargo run -q -p host --bin tunas -- profile --plan "$work/plan.json" \
  --device "exec:qemu-aarch64-static -L /usr/aarch64-linux-gnu $agent serve --stdio" \
  --out "$work/profile.json" --warmup-runs 1 --warmup-secs 0 --runs 3 --pass-secs 0 --passes 2 --canary-every 0
python3 - "$work/profile.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
assert len(t["entries"]) == 2 and not t["failures"], t
assert t["fingerprint"]["target"] == "aarch64-unknown-linux-gnu"
print("qemu profile over exec: 2 keys measured by the aarch64 agent")
PY

# int8 on aarch64 (tract's arm64 integer kernels): every kind's int8 network gives the same
# output as the native agent's tract, and the float ones too. (Not `--threads 2`: under
# qemu-user the aarch64 agent started with it hangs before its first log line; `--threads 1` runs.)
# The native agent of the workspace build (`cargo run -p device-agent` alone would resolve
# tract's features anew and build it again).
cargo build -q --workspace --all-targets
native() { target/debug/device-agent "$@"; }
for key in "stem/32x32x3/o16/k3/s2/hswish" "sep/16x16x16/o16/k3/s1/relu/res" \
    "ib/16x16x16/o24/k5/s2/e48/se0/relu" "ib/8x8x24/o24/k3/s1/e72/se16/hswish/res" \
    "head/8x8x24/o64/relu" "pool/8x8x64" "fc/1x1x64/o10"; do
  for suffix in "" "/i8"; do
    name=$(echo "$key$suffix" | tr '/' '_')
    native build-onnx "$key$suffix" --out "$work/$name.onnx"
    python3 - "$key" "$work/$name.in" <<'PY'
import random, struct, sys
h, w, c = (int(v) for v in sys.argv[1].split("/")[1].split("x"))
random.seed(7)
open(sys.argv[2], "wb").write(struct.pack(f"<{h*w*c}f", *(random.uniform(-1, 1) for _ in range(h*w*c))))
PY
    run infer "$work/$name.onnx" --input "$work/$name.in" --output "$work/$name.arm"
    native infer "$work/$name.onnx" --input "$work/$name.in" --output "$work/$name.x86"
    python3 - "$key$suffix" "$work/$name.arm" "$work/$name.x86" <<'PY'
import struct, sys
a, b = (open(p, "rb").read() for p in sys.argv[2:4])
a, b = (struct.unpack(f"<{len(x)//4}f", x) for x in (a, b))
assert len(a) == len(b) and a, (len(a), len(b))
scale = max(1.0, max(abs(v) for v in b))
err = max(abs(x - y) for x, y in zip(a, b))
# int8 outputs are uint8 steps: one step apart at most (the classifier's are dequantised
# logits: 3% of their scale); float: rounding only.
int8, logits = sys.argv[1].endswith("/i8"), sys.argv[1].startswith("fc/")
limit = (0.03 * scale if logits else 1.0) if int8 else 1e-4 * scale
assert err <= limit, f"{sys.argv[1]}: aarch64 and x86-64 differ by {err}"
print(f"qemu infer: {sys.argv[1]} aarch64 = x86-64 (largest difference {err:.3g})")
PY
  done
done
