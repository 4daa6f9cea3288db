#!/usr/bin/env bash
# SofT-GRPO on DeepSeek-R1-Distill-Qwen-1.5B, 8 GPUs, Gumbel noise tau_g 0.1 (spec §5).
# Usage: scripts/SofT-GRPO-deepscaler-8k.sh [hydra overrides...]   (environment: see scripts/_verl_recipe.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/_verl_recipe.sh
run_recipe softgrpo_trainer softgrpo-deepscaler-8k deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B 8 \
  soft_thinking.noise=gumbel \
  soft_thinking.gumbel_softmax_temperature=0.1 \
  trainer.test_freq=40 \
  trainer.save_freq=200 \
  "$@"
