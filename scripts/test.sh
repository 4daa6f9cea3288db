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
python -m pytest --cov=soft_thinking.core --cov-report=term "$@"
