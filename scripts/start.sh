#!/usr/bin/env bash
# Set everything up, then serve the app on http://127.0.0.1:${PORT:-8501} with the bundled demo run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# One app process per core plus one (at most 4), behind one address: a class opening the same link
# at once is shared out over the cores (bench/README.md, "Thirty students"). RERELRP_WORKERS=1: one.
cores=$(nproc 2>/dev/null || echo 1)
export RERELRP_WORKERS="${RERELRP_WORKERS:-$(( cores + 1 < 4 ? cores + 1 : 4 ))}"
exec .venv/bin/python -m ui.serve \
  --server.address "${ADDRESS:-127.0.0.1}" --server.port "${PORT:-8501}" \
  --server.headless true --browser.gatherUsageStats false "$@"
