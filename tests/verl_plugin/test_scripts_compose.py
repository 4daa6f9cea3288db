"""Every recipe script's overrides compose against verl's ppo_trainer + configs/verl and validate
(verl's own validate_config, the rollout/actor dataclasses, the plug-in's start-up checks and the
start-up settings main_ppo derives), without launching anything. The scripts print their overrides
with DRY_RUN=overrides (no Python) and, with DRY_RUN=1, everything main_ppo would give Ray."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from softgrpo.verl_plugin.checks import SoftGRPOConfigError, check_config
from softgrpo.verl_plugin.launch import apply_launch_settings

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
                         env={**os.environ, "DRY_RUN": "overrides", **env}, timeout=60, check=True)
    return out.stdout.splitlines()


def _script(script: str, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The script run in a copy-free way from ``tmp_path`` (its own cwd is the repo), with ``env`` on top."""
    return subprocess.run(["bash", str(REPO / "scripts" / script), *args], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, **env}, timeout=600)


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
    env = apply_launch_settings(cfg, st)  # what main_ppo adds before Ray starts
    assert env["SOFTGRPO_SGLANG"] == ("require" if soft else "off")  # the plug-in switch (stock SGLang for GRPO)
    assert ("SOFTGRPO_SGLANG_CONFIG" in env) == soft
    assert cfg.actor_rollout_ref.model.override_config.attn_implementation in ("sdpa", "flash_attention_2")
    assert "runtime_env.env_vars.SOFTGRPO_SGLANG" not in " ".join(args)  # derived, not hand-mirrored


def test_environment_sets_paths_and_cluster():
    args = _overrides("SofT-GRPO-deepscaler-8k.sh", MODEL_PATH="/m", DATA_DIR="/d", NNODES="2", GPUS_PER_NODE="4",
                      RUN_DIR="/r")
    cfg = _compose(args[:-1])
    assert (cfg.trainer.nnodes, cfg.trainer.n_gpus_per_node, cfg.actor_rollout_ref.model.path) == (2, 4, "/m")
    assert cfg.data.train_files == "/d/deepscaler/train.parquet"
    assert list(cfg.data.val_files) == ["/d/aime24/test.parquet", "/d/amc/test.parquet", "/d/math500/test.parquet"]
    assert cfg.trainer.default_local_dir == "/r/checkpoints"


BAD_ENV = [
    ({"NNODES": "two"}, "NNODES=two"),
    ({"NNODES": "0"}, "NNODES=0"),
    ({"GPUS_PER_NODE": "0"}, "GPUS_PER_NODE=0"),
    ({"GPUS_PER_NODE": "-1"}, "GPUS_PER_NODE=-1"),
    ({"GPUS_PER_NODE": ""}, "GPUS_PER_NODE="),
    ({"MODEL_PATH": ""}, "MODEL_PATH is empty"),
    ({"DRY_RUN": "yes"}, "DRY_RUN=yes"),
    ({"PYTHON": "/nonexistent/python"}, "PYTHON=/nonexistent/python"),
    ({"DATA_DIR": "/nonexistent/data"}, "DATA_DIR=/nonexistent/data"),
    ({"RUN_DIR": "/tmp/a b"}, "must not contain spaces"),
]


@pytest.mark.parametrize("env,message", BAD_ENV, ids=[next(iter(e)) + "=" + repr(next(iter(e.values()))) for e, _ in BAD_ENV])
def test_bad_environment_fails_before_anything_is_written(env, message, tmp_path):
    run_dir = tmp_path / "run"
    r = _script("GRPO-deepscaler-8k.sh", tmp_path, **{"RUN_DIR": str(run_dir), **env})
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1 and message in errors[0], r.stderr
    assert not run_dir.exists() and not (REPO / "outputs").exists() and list(tmp_path.iterdir()) == []


def test_default_gpu_count_is_said_and_python_is_the_venvs(tmp_path):
    r = _script("SofT-GRPO-deepscaler-8k-gau.sh", tmp_path, DRY_RUN="overrides")
    assert "this recipe's default, 4 GPUs per node" in r.stderr and "trainer.n_gpus_per_node=4" in r.stdout
    r = _script("SofT-GRPO-deepscaler-8k-gau.sh", tmp_path, DRY_RUN="overrides", GPUS_PER_NODE="2")
    assert "default" not in r.stderr and "trainer.n_gpus_per_node=2" in r.stdout
    # no PYTHON and no python on PATH: the repo's .venv/bin/python is found (a bad one would fail the dry run)
    if (REPO / ".venv" / "bin" / "python").exists():
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "VIRTUAL_ENV")}
        env["PATH"] = "/usr/bin:/bin"
        r = subprocess.run(["bash", str(REPO / "scripts" / "SofT-GRPO-deepscaler-8k.sh")], capture_output=True,
                           text=True, cwd=tmp_path, env={**env, "DRY_RUN": "1"},
                           timeout=600)
        assert r.returncode == 0, r.stderr
        assert "softgrpo: python .venv/bin/python" in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("script", ["SofT-GRPO-deepscaler-8k-dir.sh", "GRPO-deepscaler-8k.sh"])
def test_dry_run_prints_the_ray_env_main_ppo_derives(script, tmp_path):
    """DRY_RUN=1: main_ppo checks everything (no Ray, nothing written) and prints the job's runtime env."""
    r = _script(script, tmp_path, DRY_RUN="1", RUN_DIR=str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    env = dict(line[2:].split("=", 1) for line in r.stdout.splitlines() if line.startswith("# ") and "=" in line)
    if script.startswith("SofT"):
        assert env["SOFTGRPO_SGLANG"] == "require"
        assert '"gumbel_clamp": [-1.5, 3.0]' in env["SOFTGRPO_SGLANG_CONFIG"]
    else:
        assert env["SOFTGRPO_SGLANG"] == "off" and "SOFTGRPO_SGLANG_CONFIG" not in env
    assert env["actor_rollout_ref.model.override_config.attn_implementation"] in ("sdpa", "flash_attention_2")
    assert list(tmp_path.iterdir()) == [] and not (REPO / "outputs").exists()


def test_cpu_config_and_bad_values_are_named():
    cfg = _compose(["--config-name=cpu_tiny", "actor_rollout_ref.model.path=/x"])
    _validate(cfg)
    check_config(cfg)
    with pytest.raises(SoftGRPOConfigError, match=r"actor_rollout_ref.rollout.calculate_log_probs=False"):
        check_config(_compose(["--config-name=cpu_tiny", "actor_rollout_ref.rollout.calculate_log_probs=false"]))
    with pytest.raises(SoftGRPOConfigError, match=r"actor_rollout_ref.rollout.name='trtllm'"):
        check_config(_compose(["--config-name=cpu_tiny", "actor_rollout_ref.rollout.name=trtllm"]))
    with pytest.raises(Exception, match="gumbel_softmax_temperature"):
        check_config(_compose(["--config-name=cpu_tiny", "soft_thinking.gumbel_softmax_temperature=0"]))
