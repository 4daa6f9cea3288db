#!/usr/bin/env bash
# Sample a GRPO checkpoint with discrete tokens (T=0.6, top_p 0.95, top_k 30).
# Preset: configs/eval/discrete_grpo.yaml (spec §6), all five benchmarks, 32 samples, 32768 new tokens, seed 0.
#
# Usage:  MODEL=/path/or/hub-id scripts/run_sample_discrete-token_grpo.sh [extra flags...]
#    or:  scripts/run_sample_discrete-token_grpo.sh /path/or/hub-id [extra flags...]
# Env:    DATA_DIR (benchmark JSON dir; default: $SOFTGRPO_BENCHMARK_DIR or the hub),
#         OUTPUT_DIR (default results), RUN_NAME (default <model basename>-discrete_grpo),
#         BACKEND (default hf), DEVICE (default cuda if available else cpu), DTYPE (default bfloat16 on cuda).
# Extra flags are passed to `python -m eval run` and override the preset (e.g. --limit 5 --num_samples 4).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
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
ARGS=(--model "$MODEL" --preset "$REPO/configs/eval/discrete_grpo.yaml" --backend "${BACKEND:-hf}"
      --output-dir "${OUTPUT_DIR:-results}" --run-name "${RUN_NAME:-$(basename "${MODEL%/}")-discrete_grpo}"
      --device "$DEVICE" --dtype "$DTYPE")
if [ -n "${DATA_DIR:-}" ]; then ARGS+=(--data-dir "$DATA_DIR"); fi
cd "$REPO"
exec python -m eval run "${ARGS[@]}" "$@"
