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
PRESET=discrete_grpo
# shellcheck source=scripts/_sample_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_sample_common.sh"
