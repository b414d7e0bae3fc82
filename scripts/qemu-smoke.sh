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
