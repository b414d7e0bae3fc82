#!/usr/bin/env bash
# Copies the aarch64 agent to a board over ssh and checks that it runs.
#   scripts/push-scp.sh USER@BOARD [AGENT]
# Then profile from the host:
#   tunas profile --space proxylessnas --out board.json \
#     --device "exec:ssh USER@BOARD ./device-agent serve --stdio"
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/push-scp.sh USER@BOARD [AGENT]}
agent=${2:-}
if [ -z "$agent" ]; then agent=$(bash scripts/build-agent); fi
scp "$agent" "$target:device-agent" >&2
ssh "$target" chmod 755 device-agent
ssh "$target" ./device-agent info
