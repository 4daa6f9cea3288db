"""Start-up checks of a SofT-GRPO verl run: each failure is one ``error:`` naming the key and the
allowed values, raised before Ray starts (entry point) and again in the trainer (any launcher)."""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.errors import SoftGRPOError
from softgrpo.verl_plugin.registration import AGENT_LOOP_NAME, ENGINE_VENDOR, TRAINER_NAME
from softgrpo.verl_plugin.settings import soft_section, validate_section

SOFT_ROLLOUTS = ("hf_soft", "sglang", "vllm")


class SoftGRPOConfigError(SoftGRPOError):
    """A verl config value SofT-GRPO cannot run with."""


def _get(config: DictConfig, key: str, default: Any = None) -> Any:
    return OmegaConf.select(config, key, default=default)


def _require(config: DictConfig, key: str, allowed: tuple[Any, ...], why: str) -> None:
    value = _get(config, key)
    if value not in allowed:
        raise SoftGRPOConfigError(f"{key}={value!r} is invalid: allowed {' or '.join(map(repr, allowed))} ({why})")


def check_config(config: DictConfig) -> SoftThinkingConfig:
    """Check ``config`` (a composed verl ppo_trainer config) and return the rollout's soft settings."""
    _require(config, "trainer.v1.trainer_mode", (TRAINER_NAME,), "the soft replay metrics and estimator options")
    _require(config, "actor_rollout_ref.rollout.name", SOFT_ROLLOUTS, "a rollout that records soft traces")
    _require(config, "actor_rollout_ref.rollout.agent.default_agent_loop", (AGENT_LOOP_NAME,), "ships the trace")
    _require(config, "actor_rollout_ref.rollout.calculate_log_probs", (True,), "replay parity is reported every step")
    _require(config, "actor_rollout_ref.model.use_remove_padding", (True,), "the soft replay runs on packed rows")
    _require(config, "actor_rollout_ref.model.use_fused_kernels", (False, None), "soft log-probs need the logits")
    for role in ("actor", "ref"):
        _require(config, f"actor_rollout_ref.{role}.fsdp_config.ulysses_sequence_parallel_size", (1, None),
                 "sequence parallelism is not supported by the soft replay")
        _require(config, f"actor_rollout_ref.{role}.fsdp_config.pad_to_length", (False, None),
                 "static packed padding is not supported by the soft replay")
    rollout = config.actor_rollout_ref.rollout
    section = soft_section(_get(config, "actor_rollout_ref.rollout.custom"))
    return validate_section(section, rollout.temperature, rollout.top_p, rollout.top_k)


def engine_vendor_problem(soft: SoftThinkingConfig) -> str | None:
    """Why the soft replay engine would not be selected in this process's environment (None: fine)."""
    if soft.enable_soft_thinking and os.environ.get("VERL_ENGINE_VENDOR") != ENGINE_VENDOR:
        return (f"VERL_ENGINE_VENDOR={os.environ.get('VERL_ENGINE_VENDOR')!r}: allowed {ENGINE_VENDOR!r} "
                "when soft thinking is on (else verl's plain engine scores soft steps as tokens)")
    return None
