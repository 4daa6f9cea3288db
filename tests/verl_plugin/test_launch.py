"""The start-up settings ``softgrpo.main_ppo`` derives (``verl_plugin/launch.py``): the attention
implementation and the SGLang plug-in's variables, on composed recipe configs."""

from __future__ import annotations

import json

import pytest

from softgrpo.main_ppo import load_config
from softgrpo.verl_plugin import launch
from softgrpo.verl_plugin.checks import check_config
from softgrpo.verl_plugin.launch import LaunchError, apply_attention, apply_launch_settings, sglang_env


def test_sdpa_without_flash_attn_and_flash_attention_2_with_it(monkeypatch, capsys):
    monkeypatch.setattr(launch, "flash_attn_importable", lambda: (False, "ModuleNotFoundError: flash_attn"))
    config = load_config([])
    assert apply_attention(config) == "sdpa"
    assert config.actor_rollout_ref.model.override_config.attn_implementation == "sdpa"
    assert config.critic.model.override_config.attn_implementation == "sdpa"
    assert "attention implementation sdpa (ModuleNotFoundError: flash_attn)" in capsys.readouterr().err
    monkeypatch.setattr(launch, "flash_attn_importable", lambda: (True, "flash_attn imports"))
    config = load_config([])
    assert apply_attention(config) == "flash_attention_2"  # negative control: the choice follows the import
    assert config.actor_rollout_ref.model.override_config.attn_implementation == "flash_attention_2"


def test_explicit_attention_is_kept_or_refused(monkeypatch):
    monkeypatch.setattr(launch, "flash_attn_importable", lambda: (False, "no flash_attn"))
    config = load_config(["--config-name=cpu_tiny"])  # sets sdpa itself
    apply_attention(config)
    assert config.actor_rollout_ref.model.override_config.attn_implementation == "sdpa"
    config = load_config(["++actor_rollout_ref.model.override_config.attn_implementation=flash_attention_2"])
    with pytest.raises(LaunchError, match="flash_attention_2 but flash_attn does not import"):
        apply_attention(config)
    config = load_config(["++actor_rollout_ref.model.override_config.attn_implementation=flash"])
    with pytest.raises(LaunchError, match="allowed"):
        apply_attention(config)


def test_sglang_env_follows_the_soft_thinking_section():
    config = load_config(["soft_thinking.noise=dirichlet", "soft_thinking.logp_floor=-4.0"])
    env = apply_launch_settings(config, check_config(config))
    assert env["SOFTGRPO_SGLANG"] == "require"
    server = json.loads(env["SOFTGRPO_SGLANG_CONFIG"])
    assert server["logp_floor"] == -4.0 and server["gumbel_clamp"] == [-1.5, 3.0] and server["logprob_mode"] == "paper"
    assert config.ray_kwargs.ray_init.runtime_env.env_vars.SOFTGRPO_SGLANG_CONFIG == env["SOFTGRPO_SGLANG_CONFIG"]
    grpo = load_config(["--config-name=grpo_trainer"])
    assert sglang_env(grpo, check_config(grpo)) == {"SOFTGRPO_SGLANG": "off"}  # stock SGLang for the baseline
    cpu = load_config(["--config-name=cpu_tiny"])
    assert sglang_env(cpu, check_config(cpu)) == {}  # hf_soft: no SGLang server


def test_hand_set_sglang_variables_that_contradict_the_run_are_refused():
    config = load_config(["ray_kwargs.ray_init.runtime_env.env_vars.SOFTGRPO_SGLANG=off"])
    with pytest.raises(LaunchError, match="SOFTGRPO_SGLANG='off' is invalid for the soft arm"):
        sglang_env(config, check_config(config))
    config = load_config(["+ray_kwargs.ray_init.runtime_env.env_vars.SOFTGRPO_SGLANG_CONFIG='{\"logp_floor\": -9}'"])
    with pytest.raises(LaunchError, match="differs from the soft_thinking section"):
        sglang_env(config, check_config(config))
    config = load_config(["ray_kwargs.ray_init.runtime_env.env_vars.SOFTGRPO_SGLANG=on"])
    assert sglang_env(config, check_config(config))["SOFTGRPO_SGLANG"] == "on"  # a user's 'on' is kept
