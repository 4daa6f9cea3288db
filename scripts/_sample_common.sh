#!/usr/bin/env bash
# Shared body of the scripts/run_sample_*.sh launchers: sourced with PRESET set to a file name
# under configs/eval/ (without .yaml). Reads MODEL (or the first argument), DATA_DIR, OUTPUT_DIR,
# RUN_NAME, BACKEND, DEVICE, DTYPE; extra arguments go to `python -m eval run`.
# Relative MODEL, DATA_DIR and OUTPUT_DIR resolve where you stand (the script does not change folder);
# every value is checked by `python -m eval run` before anything is written.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
if [ -f "$REPO/.venv/bin/activate" ]; then
  # shellcheck disable=SC1091
  source "$REPO/.venv/bin/activate"
fi
if [ -z "${MODEL:-}" ] && [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then
  MODEL="$1"; shift
fi
if [ -z "${MODEL:-}" ]; then
  echo "error: MODEL is not set: allowed MODEL=/path/to/checkpoint, a Hub id, or the path as the first argument" >&2
  exit 2
fi
PRESET_FILE="$REPO/configs/eval/$PRESET.yaml"
if [ ! -f "$PRESET_FILE" ]; then
  echo "error: preset $PRESET_FILE not found: allowed $(cd "$REPO/configs/eval" && ls -- *.yaml | tr '\n' ' ')" >&2
  exit 2
fi
case "${BACKEND:-hf}" in
  hf|sglang|vllm) ;;
  *) echo "error: BACKEND=${BACKEND} is invalid: allowed hf, sglang, vllm" >&2; exit 2 ;;
esac
# the repo's packages importable from any folder; the caller's folder is not put first on sys.path
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONSAFEPATH=1
if [ -z "${DEVICE:-}" ]; then
  DEVICE=$(python -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
fi
if [ -z "${DTYPE:-}" ]; then
  if [ "$DEVICE" = "cpu" ]; then DTYPE=float32; else DTYPE=bfloat16; fi
fi
ARGS=(--model "$MODEL" --preset "$PRESET_FILE" --backend "${BACKEND:-hf}"
      --output-dir "${OUTPUT_DIR:-results}" --run-name "${RUN_NAME:-$(basename -- "${MODEL%/}")-$PRESET}"
      --device "$DEVICE" --dtype "$DTYPE")
if [ -n "${DATA_DIR:-}" ]; then ARGS+=(--data-dir "$DATA_DIR"); fi
exec python -m eval run "${ARGS[@]}" "$@"
