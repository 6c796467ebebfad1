#!/usr/bin/env bash
# Set everything up (idempotent), then run the whole test suite. Extra args go to pytest.
# The fast half, what needs no /dev/fuse (~60 % of the tests, ~2 min): scripts/test.sh -m "not mount"
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
echo "test: $(.venv/bin/python -c 'import sys; print(sys.version.split()[0], sys._base_executable)')" >&2
.venv/bin/ruff check sessionfs tests scripts
.venv/bin/python -m mypy sessionfs  # the package ships py.typed: its types must hold
exec .venv/bin/python -m pytest "$@"
