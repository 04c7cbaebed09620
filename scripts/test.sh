#!/usr/bin/env bash
# Set everything up (browser included), lint with ruff, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
.venv/bin/python -m ruff check .
exec .venv/bin/python -m pytest -q "$@"
