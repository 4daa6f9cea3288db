#!/usr/bin/env bash
# verl parquets for the recipes: DeepScaleR (train) and AIME24 / AMC / MATH-500 (validation) under
# ${DATA_DIR:-data/verl}/{deepscaler,aime24,amc,math500}/, plus SOURCES.json with the resolved commits.
# Usage: scripts/prepare_data.sh [--local DIR] [--revision NAME=COMMIT ...] [--only NAME ...]
#   default: the Hugging Face hub (pin with --revision; SOURCES.json records what was used);
#   --local DIR: files instead of the hub (e.g. the original's aime.parquet, amc.parquet, math.parquet and a
#   deepscaler.jsonl of {"problem", "answer"} records). Offline without --local: one `error:` line, exit 2.
# PYTHON: as in scripts/_verl_recipe.sh (default .venv/bin/python when it exists, else python3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/_verl_recipe.sh
python=$(_recipe_python)
exec "$python" -m softgrpo.verl_plugin.data_prep --out "${DATA_DIR:-data/verl}" "$@"
