#!/usr/bin/env bash
# SofT-GRPO on DeepSeek-R1-Distill-Qwen-7B, 8 GPUs, micro-batch 1, Gumbel tau_g 0.1 (spec §5).
# Usage: scripts/SofT-GRPO-deepscaler-8k-qwen7.sh [hydra overrides...]   (environment: see scripts/_verl_recipe.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/_verl_recipe.sh
run_recipe softgrpo_trainer softgrpo-deepscaler-8k-qwen7 deepseek-ai/DeepSeek-R1-Distill-Qwen-7B 8 \
  soft_thinking.noise=gumbel \
  soft_thinking.gumbel_softmax_temperature=0.1 \
  actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1 \
  actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=1 \
  actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=1 \
  trainer.test_freq=20 \
  trainer.save_freq=200 \
  "$@"
