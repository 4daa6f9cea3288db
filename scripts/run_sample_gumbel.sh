#!/usr/bin/env bash
# Sample a SofT-GRPO checkpoint with soft thinking + Gumbel noise (T=1.0, top_p 0.95, top_k 5, K=5, tau_g=0.1).
# Preset: configs/eval/gumbel.yaml (spec §6), all five benchmarks, 32 samples, 32768 new tokens, seed 0.
#
# Usage:  MODEL=/path/or/hub-id scripts/run_sample_gumbel.sh [extra flags...]
#    or:  scripts/run_sample_gumbel.sh /path/or/hub-id [extra flags...]
# Env:    DATA_DIR (benchmark JSON dir; default: $SOFTGRPO_BENCHMARK_DIR or the hub),
#         OUTPUT_DIR (default results), RUN_NAME (default <model basename>-gumbel),
#         BACKEND (default hf), DEVICE (default cuda if available else cpu), DTYPE (default bfloat16 on cuda).
# Extra flags are passed to `python -m eval run` and override the preset (e.g. --limit 5 --num_samples 4).
PRESET=gumbel
# shellcheck source=scripts/_sample_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_sample_common.sh"
