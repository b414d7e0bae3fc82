#!/usr/bin/env bash
# Pushes the static aarch64 agent to an Android phone and checks that it runs.
#   scripts/push-adb.sh [AGENT] [-s SERIAL]
# Then profile from the host:
#   tunas profile --space proxylessnas --out phone.json \
#     --device "exec:adb shell /data/local/tmp/device-agent serve --stdio"
set -euo pipefail
cd "$(dirname "$0")/.."
agent=${1:-}
shift || true
if [ -z "$agent" ]; then agent=$(bash scripts/build-agent --static); fi
adb "$@" push "$agent" /data/local/tmp/device-agent >&2
adb "$@" shell chmod 755 /data/local/tmp/device-agent
adb "$@" shell /data/local/tmp/device-agent info
