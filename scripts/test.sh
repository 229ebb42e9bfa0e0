#!/usr/bin/env bash
# Install the package with its test extras into .venv, lint, and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
