#!/usr/bin/env bash
# The discrete GRPO baseline: the same recipe and pipeline with soft thinking off (spec §5).
# Usage: scripts/GRPO-deepscaler-8k.sh [hydra overrides...]   (environment: see scripts/_verl_recipe.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/_verl_recipe.sh
run_recipe grpo_trainer grpo-deepscaler-8k deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B 8 \
  trainer.test_freq=40 \
  trainer.save_freq=200 \
  "$@"
