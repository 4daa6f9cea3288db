#!/usr/bin/env bash
# SofT-GRPO on Llama-3.2-3B-Instruct, 8 GPUs, Gumbel tau_g 0.1; it has no </think> token, so it stays soft until EOS (explicit, spec §1).
# Usage: scripts/SofT-GRPO-deepscaler-8k-llama3.sh [hydra overrides...]   (environment: see scripts/_verl_recipe.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/_verl_recipe.sh
run_recipe softgrpo_trainer softgrpo-deepscaler-8k-llama3 meta-llama/Llama-3.2-3B-Instruct 8 \
  soft_thinking.noise=gumbel \
  soft_thinking.gumbel_softmax_temperature=0.1 \
  +soft_thinking.soft_until_eos=true \
  +reward.custom_reward_function.reward_kwargs.require_think_end=false \
  trainer.test_freq=20 \
  trainer.save_freq=80 \
  "$@"
