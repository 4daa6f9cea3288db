#!/usr/bin/env bash
# SofT-GRPO ablation: Dirichlet noise, tau_g 1, DeepSeek-R1-Distill-Qwen-1.5B, 4 GPUs (spec §5).
# Usage: scripts/SofT-GRPO-deepscaler-8k-dir.sh [hydra overrides...]   (environment: see scripts/_verl_recipe.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/_verl_recipe.sh
run_recipe softgrpo_trainer softgrpo-deepscaler-8k-dir deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B 4 \
  soft_thinking.noise=dirichlet \
  soft_thinking.gumbel_softmax_temperature=1.0 \
  trainer.test_freq=40 \
  trainer.save_freq=200 \
  "$@"
