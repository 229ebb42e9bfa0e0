#!/usr/bin/env bash
# Create (or reuse) .venv and install the package with the given extras at the
# versions pinned in constraints.txt. The pins are versions, not builds: pip's
# default torch wheel on Linux x86-64 is the CUDA build; a torch of the pinned
# version already in .venv (e.g. 2.13.0+cpu from the CPU index, see README.md)
# is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
spec="."
if [ -n "$extras" ]; then spec=".[$extras]"; fi
.venv/bin/python -m pip install --quiet -c constraints.txt -e "$spec"
