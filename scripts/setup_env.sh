#!/usr/bin/env bash
# Create (or reuse) .venv and install the package with the given extras,
# pinning torch to the CPU wheel through constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
spec="."
if [ -n "$extras" ]; then spec=".[$extras]"; fi
.venv/bin/python -m pip install --quiet -c constraints.txt -e "$spec"
