#!/usr/bin/env bash
# Shared by the verl recipe scripts (SofT-GRPO-deepscaler-8k*.sh, GRPO-deepscaler-8k.sh): turns the
# environment into Hydra overrides and runs `python -m softgrpo.main_ppo` (verl 0.9.1's main_ppo + plug-in).
#
# Environment (all optional; every value is checked before anything is written):
#   MODEL_PATH      HF model id or folder                  (default: the script's model)
#   DATA_DIR        output of scripts/prepare_data.sh       (default: data/verl; its parquets must exist)
#   NNODES          nodes of the Ray cluster, >= 1          (default: 1)
#   GPUS_PER_NODE   GPUs per node, >= 1                     (default: the script's count, printed at start)
#   RUN_DIR         checkpoints, validation, metrics.jsonl  (default: runs/verl/<experiment>, in the repo's
#                                                            git-ignored runs/; nothing else is written:
#                                                            main_ppo keeps no Hydra outputs/ folder)
#   ROLLOUT         rollout engine: sglang or vllm          (default: sglang; vllm = verl's vLLM server with the
#                                                            SofT-GRPO vLLM plug-in on soft arms, stock vLLM on
#                                                            GRPO; install with setup.sh --gpu-vllm)
#   PYTHON          interpreter                             (default: the repo's .venv/bin/python if it
#                                                            exists, else python3 on PATH)
#   DRY_RUN         1: check everything with main_ppo (no Ray, nothing written) and print the overrides,
#                   one per line, then the Ray runtime env the job gets (SOFTGRPO_SGLANG switch and
#                   SOFTGRPO_SGLANG_CONFIG of the soft arms, or with ROLLOUT=vllm SOFTGRPO_VLLM_CONFIG,
#                   SOFTGRPO_VLLM_MAX_TOPK and SOFTGRPO_VLLM_WIDTH; attention implementation) as `#` lines;
#                   overrides: print the overrides only (no Python); unset or 0: run
# At start-up main_ppo logs the attention implementation (sdpa unless flash_attn imports) and the
# SGLang plug-in variables. Multi-node: start Ray yourself (`ray start --head` on node 0,
# `ray start --address=<head>:6379` on the others, each with its GPUs), export RAY_ADDRESS=auto on
# node 0 and run the script there with NNODES=<n>; the variables reach every node through
# ray_kwargs.ray_init.runtime_env.env_vars.
set -euo pipefail

_recipe_fail() {
  echo "error: $*" >&2
  exit 2
}

_positive_int() {  # NAME VALUE
  case "$2" in
    "" | *[!0-9]* | 0*) _recipe_fail "$1=$2 is invalid: allowed an integer >= 1" ;;
  esac
}

_recipe_python() {
  if [ -n "${PYTHON:-}" ]; then
    command -v "$PYTHON" >/dev/null 2>&1 || _recipe_fail "PYTHON=$PYTHON is invalid: allowed an executable python"
    echo "$PYTHON"
  elif [ -x .venv/bin/python ]; then
    echo .venv/bin/python
  elif command -v python3 >/dev/null 2>&1; then
    echo python3
  else
    _recipe_fail "PYTHON is unset, .venv/bin/python does not exist and python3 is not on PATH: run setup.sh or set PYTHON"
  fi
}

# run_recipe CONFIG_NAME EXPERIMENT DEFAULT_MODEL DEFAULT_GPUS [overrides...]
run_recipe() {
  local config_name=$1 experiment=$2 default_model=$3 default_gpus=$4
  shift 4
  local model=${MODEL_PATH-$default_model}
  local data=${DATA_DIR-data/verl}
  local nnodes=${NNODES-1}
  local gpus=${GPUS_PER_NODE-$default_gpus}
  local run_dir=${RUN_DIR-runs/verl/$experiment}
  local dry=${DRY_RUN-}
  local rollout=${ROLLOUT-sglang}
  _positive_int NNODES "$nnodes"
  _positive_int GPUS_PER_NODE "$gpus"
  [ -n "$model" ] || _recipe_fail "MODEL_PATH is empty: allowed a Hugging Face model id or a model folder"
  [ -n "$data" ] || _recipe_fail "DATA_DIR is empty: allowed the folder written by scripts/prepare_data.sh"
  [ -n "$run_dir" ] || _recipe_fail "RUN_DIR is empty: allowed a folder for checkpoints and metrics"
  case "$rollout" in
    sglang | vllm) ;;
    *) _recipe_fail "ROLLOUT=$rollout is invalid: allowed sglang or vllm" ;;
  esac
  case "$dry" in
    "" | 0 | 1 | overrides) ;;
    *) _recipe_fail "DRY_RUN=$dry is invalid: allowed 1, overrides, 0 or unset" ;;
  esac
  case "$model$data$run_dir" in
    *,* | *[[:space:]]* | *[\[\]\'\"=]*)
      _recipe_fail "MODEL_PATH/DATA_DIR/RUN_DIR must not contain spaces, commas, quotes, '=' or brackets (Hydra override syntax)" ;;
  esac
  if [ -z "${GPUS_PER_NODE:-}" ]; then
    echo "softgrpo: GPUS_PER_NODE unset: this recipe's default, $default_gpus GPUs per node" >&2
  fi
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
    "actor_rollout_ref.rollout.name=$rollout"
    "actor_rollout_ref.actor.fsdp_config.param_offload=true"
    "actor_rollout_ref.actor.fsdp_config.optimizer_offload=true"
    "actor_rollout_ref.ref.fsdp_config.param_offload=true"
    "$@"
  )
  if [ "$dry" = overrides ]; then
    printf '%s\n' "${args[@]}"
    return 0
  fi
  local python
  python=$(_recipe_python)
  echo "softgrpo: python $python" >&2
  if [ "$dry" = 1 ]; then
    SOFTGRPO_DRY_RUN=1 exec "$python" -m softgrpo.main_ppo "${args[@]}"
  fi
  local f
  for f in "$data/deepscaler/train.parquet" "$data/aime24/test.parquet" "$data/amc/test.parquet" \
    "$data/math500/test.parquet"; do
    [ -f "$f" ] || _recipe_fail "DATA_DIR=$data: $f does not exist (run scripts/prepare_data.sh)"
  done
  # main_ppo checks everything, then creates the metrics file's folder; verl writes the rest under RUN_DIR
  export VERL_FILE_LOGGER_PATH=${VERL_FILE_LOGGER_PATH:-$run_dir/metrics.jsonl}
  exec "$python" -m softgrpo.main_ppo "${args[@]}"
}
