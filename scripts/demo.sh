#!/usr/bin/env bash
# Install the package into .venv and run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/python scripts/demo.py "$@"
echo "scripts/demo.sh: ${SECONDS} s in total (set-up included)"
