"""Every recipe script's overrides compose against verl's ppo_trainer + configs/verl and validate
(verl's own validate_config, the rollout/actor dataclasses, the plug-in's start-up checks), without
launching anything. The scripts print their overrides with DRY_RUN=1."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from softgrpo.verl_plugin.checks import SoftGRPOConfigError, check_config

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "configs" / "verl"
SCRIPTS = {
    "SofT-GRPO-deepscaler-8k.sh": ("gumbel", 0.1, True, 8, "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"),
    "SofT-GRPO-deepscaler-8k-qwen7.sh": ("gumbel", 0.1, True, 8, "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"),
    "SofT-GRPO-deepscaler-8k-llama3.sh": ("gumbel", 0.1, True, 8, "meta-llama/Llama-3.2-3B-Instruct"),
    "SofT-GRPO-deepscaler-8k-dir.sh": ("dirichlet", 1.0, True, 4, "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"),
    "SofT-GRPO-deepscaler-8k-gau.sh": ("gaussian", 1.0, True, 4, "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"),
    "GRPO-deepscaler-8k.sh": ("gumbel", 0.1, False, 8, "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"),
}


def _overrides(script: str, **env: str) -> list[str]:
    out = subprocess.run(["bash", str(REPO / "scripts" / script), "extra.key=1"], capture_output=True, text=True,
                         env={**os.environ, "DRY_RUN": "1", **env}, timeout=60, check=True)
    return out.stdout.splitlines()


def _compose(args: list[str]):
    name = args[0].removeprefix("--config-name=")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name=name, overrides=args[1:])


def _validate(cfg) -> None:
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout)
    omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    OmegaConf.resolve(cfg)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_composes_and_validates(script):
    noise, tau, soft, gpus, model = SCRIPTS[script]
    args = _overrides(script)
    assert args[-1] == "extra.key=1"  # user overrides come last and win
    cfg = _compose(args[:-1])
    _validate(cfg)
    st = check_config(cfg)  # the plug-in's start-up check
    assert (st.noise, st.gumbel_softmax_temperature, st.enable_soft_thinking) == (noise, tau, soft)
    assert (st.temperature, st.top_p, st.top_k, st.max_topk) == (1.0, 0.95, 5, 5)
    assert cfg.trainer.n_gpus_per_node == gpus and cfg.actor_rollout_ref.model.path == model
    assert cfg.actor_rollout_ref.rollout.custom.soft_thinking.noise == noise
    assert (cfg.data.train_batch_size, cfg.actor_rollout_ref.rollout.n, cfg.data.max_response_length) == (64, 8, 8192)
    assert cfg.actor_rollout_ref.actor.kl_loss_type == "low_var_kl" and cfg.actor_rollout_ref.actor.use_kl_loss
    assert cfg.reward.custom_reward_function.path == "pkg://softgrpo.rewards"
    assert cfg.ray_kwargs.ray_init.runtime_env.env_vars.SOFTGRPO_VERL_PLUGIN == "1"


def test_environment_sets_paths_and_cluster():
    args = _overrides("SofT-GRPO-deepscaler-8k.sh", MODEL_PATH="/m", DATA_DIR="/d", NNODES="2", GPUS_PER_NODE="4",
                      RUN_DIR="/r")
    cfg = _compose(args[:-1])
    assert (cfg.trainer.nnodes, cfg.trainer.n_gpus_per_node, cfg.actor_rollout_ref.model.path) == (2, 4, "/m")
    assert cfg.data.train_files == "/d/deepscaler/train.parquet"
    assert list(cfg.data.val_files) == ["/d/aime24/test.parquet", "/d/amc/test.parquet", "/d/math500/test.parquet"]
    assert cfg.trainer.default_local_dir == "/r/checkpoints"
    bad = subprocess.run(["bash", str(REPO / "scripts" / "GRPO-deepscaler-8k.sh")], capture_output=True, text=True,
                         env={**os.environ, "DRY_RUN": "1", "NNODES": "two"}, timeout=60)
    assert bad.returncode == 2 and "error: NNODES=two" in bad.stderr


def test_cpu_config_and_bad_values_are_named():
    cfg = _compose(["--config-name=cpu_tiny", "actor_rollout_ref.model.path=/x"])
    _validate(cfg)
    check_config(cfg)
    with pytest.raises(SoftGRPOConfigError, match=r"actor_rollout_ref.rollout.calculate_log_probs=False"):
        check_config(_compose(["--config-name=cpu_tiny", "actor_rollout_ref.rollout.calculate_log_probs=false"]))
    with pytest.raises(SoftGRPOConfigError, match=r"actor_rollout_ref.rollout.name='vllm'"):
        check_config(_compose(["--config-name=cpu_tiny", "actor_rollout_ref.rollout.name=vllm"]))
    with pytest.raises(Exception, match="gumbel_softmax_temperature"):
        check_config(_compose(["--config-name=cpu_tiny", "soft_thinking.gumbel_softmax_temperature=0"]))
