#!/usr/bin/env bash
# README command 1: the embedded default. Warm-starts a tiny Qwen2 on synthetic arithmetic, trains
# GRPO and SofT-GRPO from that start, evaluates all three checkpoints with soft and discrete
# inference and writes runs/quickstart/{report.md,summary.json,metrics.jsonl,*.png}.
# Extra arguments go to python -m softgrpo.quickstart (e.g. --seeds 3, --fast, key=value overrides).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -x .venv/bin/python ] || bash setup.sh
. .venv/bin/activate
exec python -m softgrpo.quickstart "$@"
