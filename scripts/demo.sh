#!/usr/bin/env bash
# Set everything up (idempotent), generate the built-in demo store and show it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/sessionfs demo "$@"
