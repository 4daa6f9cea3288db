#!/usr/bin/env bash
# Shared by the verl recipe scripts (SofT-GRPO-deepscaler-8k*.sh, GRPO-deepscaler-8k.sh): turns the
# environment into Hydra overrides and runs `python -m softgrpo.main_ppo` (verl 0.9.1's main_ppo + plug-in).
#
# Environment (all optional):
#   MODEL_PATH      HF model id or folder                  (default: the script's model)
#   DATA_DIR        output of scripts/prepare_data.sh       (default: data/verl)
#   NNODES          nodes of the Ray cluster                (default: 1)
#   GPUS_PER_NODE   GPUs per node                           (default: the script's count)
#   RUN_DIR         checkpoints, metrics.jsonl, outputs     (default: runs/verl/<experiment>)
#   PYTHON          interpreter                             (default: python)
#   DRY_RUN=1       print the overrides, one per line, and exit (used by the tests)
# Multi-node: start Ray yourself (`ray start --head` on node 0, `ray start --address=<head>:6379` on the
# others, each with its GPUs), export RAY_ADDRESS=auto on node 0 and run the script there with NNODES=<n>.
# The plug-in's environment reaches every node through ray_kwargs.ray_init.runtime_env.env_vars.
set -euo pipefail

# run_recipe CONFIG_NAME EXPERIMENT DEFAULT_MODEL DEFAULT_GPUS [overrides...]
run_recipe() {
  local config_name=$1 experiment=$2 default_model=$3 default_gpus=$4
  shift 4
  local model=${MODEL_PATH:-$default_model}
  local data=${DATA_DIR:-data/verl}
  local nnodes=${NNODES:-1}
  local gpus=${GPUS_PER_NODE:-$default_gpus}
  local run_dir=${RUN_DIR:-runs/verl/$experiment}
  case "$nnodes$gpus" in *[!0-9]*|"") echo "error: NNODES=$nnodes and GPUS_PER_NODE=$gpus must be integers" >&2; exit 2 ;; esac
  local args=(
    "--config-name=$config_name"
    "actor_rollout_ref.model.path=$model"
    "data.train_files=$data/deepscaler/train.parquet"
    "data.val_files=[$data/aime24/test.parquet,$data/amc/test.parquet,$data/math500/test.parquet]"
    "trainer.nnodes=$nnodes"
    "trainer.n_gpus_per_node=$gpus"
    "trainer.experiment_name=$experiment"
    "trainer.default_local_dir=$run_dir/checkpoints"
    "trainer.validation_data_dir=$run_dir/validation"
    "trainer.resume_mode=auto"
    "actor_rollout_ref.actor.fsdp_config.param_offload=true"
    "actor_rollout_ref.actor.fsdp_config.optimizer_offload=true"
    "actor_rollout_ref.ref.fsdp_config.param_offload=true"
    "$@"
  )
  if [ -n "${DRY_RUN:-}" ]; then
    printf '%s\n' "${args[@]}"
    return 0
  fi
  mkdir -p "$run_dir"
  export VERL_FILE_LOGGER_PATH=${VERL_FILE_LOGGER_PATH:-$run_dir/metrics.jsonl}
  exec "${PYTHON:-python}" -m softgrpo.main_ppo "${args[@]}"
}
