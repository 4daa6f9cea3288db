"""The vLLM rollout's start-up settings: what ``softgrpo.main_ppo`` gives the vLLM servers, and the
recipe scripts' ``ROLLOUT=vllm`` switch."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from soft_thinking.engines.sglang.hooks import SERVER_FIELDS
from softgrpo.verl_plugin.checks import check_config
from softgrpo.verl_plugin.cli import compose_config
from softgrpo.verl_plugin.launch import LaunchError, server_settings, vllm_env

REPO = Path(__file__).resolve().parents[2]
VLLM = ["actor_rollout_ref.model.path=/x", "actor_rollout_ref.rollout.name=vllm"]


def _env(*overrides: str) -> tuple[dict[str, str], object]:
    cfg = compose_config("cpu_tiny", [*VLLM, *overrides])
    soft = check_config(cfg)
    return vllm_env(cfg, soft), soft


def test_soft_vllm_run_gets_the_server_wide_settings():
    env, soft = _env("soft_thinking.logp_floor=-30.0", "soft_thinking.gumbel_clamp=[-2.0,4.0]", "soft_thinking.max_topk=9")
    assert json.loads(env["SOFTGRPO_VLLM_CONFIG"]) == json.loads(server_settings(soft))
    assert env["SOFTGRPO_VLLM_MAX_TOPK"] == "9" and env["SOFTGRPO_VLLM_WIDTH"] == "32"
    # the servers' parser reads SOFTGRPO_VLLM_CONFIG (not SGLang's variable): the shared options arrive
    from soft_thinking.engines.vllm.settings import plugin_state

    server = plugin_state(env).server_config()
    assert server.logp_floor == -30.0 and server.gumbel_clamp == (-2.0, 4.0)
    assert {f: getattr(server, f) for f in SERVER_FIELDS} == {f: getattr(soft, f) for f in SERVER_FIELDS}
    assert plugin_state({}).server_config().logp_floor == -3.0  # control: without the variable, the default


def test_discrete_and_sglang_runs_get_no_vllm_variables():
    assert _env("soft_thinking.enable_soft_thinking=false")[0] == {}
    cfg = compose_config("cpu_tiny", ["actor_rollout_ref.model.path=/x", "actor_rollout_ref.rollout.name=sglang"])
    assert vllm_env(cfg, check_config(cfg)) == {}


def test_users_own_variables_must_agree():
    key = "ray_kwargs.ray_init.runtime_env.env_vars"
    with pytest.raises(LaunchError, match="SOFTGRPO_VLLM_CONFIG=.* differs from the soft_thinking section"):
        _env(f"+{key}.SOFTGRPO_VLLM_CONFIG='{{\"logp_floor\": -1.0}}'")
    with pytest.raises(LaunchError, match=r"SOFTGRPO_VLLM_MAX_TOPK='2' is invalid: allowed an integer >= 5"):
        _env(f"+{key}.SOFTGRPO_VLLM_MAX_TOPK='2'")
    env, _ = _env(f"+{key}.SOFTGRPO_VLLM_WIDTH='64'")
    assert env["SOFTGRPO_VLLM_WIDTH"] == "64"
    cfg = compose_config("cpu_tiny", VLLM)
    assert OmegaConf.select(cfg, "actor_rollout_ref.rollout.name") == "vllm"


def _script(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / script)], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, **env}, timeout=600)


def test_rollout_switch_of_the_recipe_scripts(tmp_path):
    r = _script("SofT-GRPO-deepscaler-8k.sh", tmp_path, DRY_RUN="overrides", ROLLOUT="vllm")
    assert r.returncode == 0 and "actor_rollout_ref.rollout.name=vllm" in r.stdout.splitlines(), r.stderr
    r = _script("GRPO-deepscaler-8k.sh", tmp_path, DRY_RUN="overrides")
    assert "actor_rollout_ref.rollout.name=sglang" in r.stdout.splitlines()
    r = _script("GRPO-deepscaler-8k.sh", tmp_path, DRY_RUN="overrides", ROLLOUT="trtllm")
    assert r.returncode == 2 and "error: ROLLOUT=trtllm is invalid: allowed sglang or vllm" in r.stderr


@pytest.mark.slow
def test_dry_run_prints_the_vllm_variables(tmp_path):
    r = _script("SofT-GRPO-deepscaler-8k.sh", tmp_path, DRY_RUN="1", ROLLOUT="vllm", RUN_DIR=str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    env = dict(line[2:].split("=", 1) for line in r.stdout.splitlines() if line.startswith("# ") and "=" in line)
    assert '"gumbel_clamp": [-1.5, 3.0]' in env["SOFTGRPO_VLLM_CONFIG"] and env["SOFTGRPO_VLLM_MAX_TOPK"] == "5"
    assert "softgrpo: vLLM rollout servers get SOFTGRPO_VLLM_CONFIG=" in r.stderr
    assert list(tmp_path.iterdir()) == []
