#!/usr/bin/env bash
# README command 2: lint and the whole test suite (CPU). Creates the venv via setup.sh if missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -x .venv/bin/python ] || bash setup.sh
bash setup.sh >/dev/null  # idempotent: a stamp check when nothing changed
. .venv/bin/activate
echo "== ruff check"
ruff check .
echo "== pytest"
# two workers (pytest-xdist), a test file per unit so module fixtures are built once; SOFTGRPO_TEST_WORKERS=0 runs
# in this process. `-m extended` adds the longer variants the default run leaves out.
python -m pytest -n "${SOFTGRPO_TEST_WORKERS:-2}" --dist loadfile --cov=soft_thinking.core --cov-report=term "$@"
