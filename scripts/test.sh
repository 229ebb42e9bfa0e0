#!/usr/bin/env bash
# Install the package with its test, distributed, docs, bench and onnx extras into .venv, lint,
# run the test suite (tests/test_distributed.py needs the distributed extra, the example
# scripts in tests/test_examples.py need matplotlib from the bench extra; a smoke run of
# the quality benchmark's runner is in tests/test_benchmarks.py), and build the
# documentation site in strict mode (a broken reference or a missing include fails it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test,distributed,docs,bench,onnx
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
site_dir="$(mktemp -d)"
trap 'rm -rf "$site_dir"' EXIT
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir "$site_dir"
