#!/usr/bin/env bash
# The project's test command: installs what is missing, builds every binary, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --workspace --all-targets
cargo test --workspace
