#!/usr/bin/env bash
# Shared body of the scripts/run_sample_*.sh launchers: sourced with PRESET set to a file name
# under configs/eval/ (without .yaml). Reads MODEL (or the first argument), DATA_DIR, OUTPUT_DIR,
# RUN_NAME, BACKEND, DEVICE, DTYPE; extra arguments go to `python -m eval run`.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
if [ -f "$HERE/../.venv/bin/activate" ]; then
  # shellcheck disable=SC1091
  source "$HERE/../.venv/bin/activate"
fi
if [ -z "${MODEL:-}" ] && [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then
  MODEL="$1"; shift
fi
if [ -z "${MODEL:-}" ]; then
  echo "error: set MODEL=/path/to/checkpoint (or pass it as the first argument)" >&2
  exit 2
fi
if [ -z "${DEVICE:-}" ]; then
  DEVICE=$(python -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
fi
if [ -z "${DTYPE:-}" ]; then
  if [ "$DEVICE" = "cpu" ]; then DTYPE=float32; else DTYPE=bfloat16; fi
fi
ARGS=(--model "$MODEL" --preset "$REPO/configs/eval/$PRESET.yaml" --backend "${BACKEND:-hf}"
      --output-dir "${OUTPUT_DIR:-results}" --run-name "${RUN_NAME:-$(basename "${MODEL%/}")-$PRESET}"
      --device "$DEVICE" --dtype "$DTYPE")
if [ -n "${DATA_DIR:-}" ]; then ARGS+=(--data-dir "$DATA_DIR"); fi
cd "$REPO"
exec python -m eval run "${ARGS[@]}" "$@"
