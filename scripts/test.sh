#!/usr/bin/env bash
# Install the package with its test and distributed extras into .venv, lint, and run
# the test suite (tests/test_distributed.py needs the distributed extra).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test,distributed
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
