#!/usr/bin/env bash
# Set everything up, then serve the app on http://127.0.0.1:${PORT:-8501} with the bundled demo run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m ui.serve \
  --server.address "${ADDRESS:-127.0.0.1}" --server.port "${PORT:-8501}" \
  --server.headless true --browser.gatherUsageStats false "$@"
