#!/usr/bin/env bash
# Install the package with its test, distributed, docs and bench extras into .venv, lint,
# run the test suite (tests/test_distributed.py needs the distributed extra, the example
# scripts in tests/test_examples.py need matplotlib from the bench extra), and build the
# documentation site in strict mode (a broken reference or a missing include fails it),
# then run the quick quality benchmark (4 data sets, 1 seed; results go to a temporary
# folder, nothing is asserted about them: the run only proves the runner works).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test,distributed,docs,bench
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
site_dir="$(mktemp -d)"
quick_dir="$(mktemp -d)"
trap 'rm -rf "$site_dir" "$quick_dir"' EXIT
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir "$site_dir"
.venv/bin/python -m benchmarks.quality --quick --out-dir "$quick_dir"
