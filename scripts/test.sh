#!/usr/bin/env bash
# Set everything up (idempotent), then run the whole test suite. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check sessionfs tests scripts
exec .venv/bin/python -m pytest "$@"
