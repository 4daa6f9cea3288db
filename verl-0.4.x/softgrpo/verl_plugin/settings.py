"""The ``soft_thinking`` section of a verl run, read in one place.

It lives at ``actor_rollout_ref.rollout.custom.soft_thinking`` (``RolloutConfig.custom`` is verl's
extension dict, so the rollout server, the agent loop and the trainer all see it); the Hydra config in
``configs/verl/`` fills it from a top-level ``soft_thinking:`` section, the same keys as the
reference trainer (:class:`soft_thinking.core.config.SoftThinkingConfig`).

The thinking-phase sampling keys (``temperature``, ``top_p``, ``top_k``) are verl's own
(``actor_rollout_ref.rollout.*``, or ``val_kwargs`` in validation); setting them in the section is an
error, so there is one source of truth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from omegaconf import DictConfig, OmegaConf

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.core.logprob import LogProbOptions
from soft_thinking.errors import SoftGRPOError

SECTION_KEY = "actor_rollout_ref.rollout.custom.soft_thinking"
VERL_SAMPLING_KEYS = ("temperature", "top_p", "top_k")
#: non-tensor key of the estimator options in the engine micro-batch (set by the softgrpo_sync trainer).
LOGPROB_OPTIONS_KEY = "softgrpo_logprob_options"


class SoftSettingsError(SoftGRPOError):
    """A bad ``soft_thinking`` section; the message names the key and the allowed values."""


def _plain(node: Any) -> Any:
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    return node


def soft_section(rollout_custom: Mapping[str, Any] | None) -> dict[str, Any]:
    """The section as a plain dict (``{}`` when absent), from ``RolloutConfig.custom``."""
    custom = _plain(rollout_custom) or {}
    if not isinstance(custom, Mapping):
        raise SoftSettingsError(f"actor_rollout_ref.rollout.custom must be a mapping, got {type(custom).__name__}")
    section = _plain(custom.get("soft_thinking")) or {}
    if not isinstance(section, Mapping):
        raise SoftSettingsError(f"{SECTION_KEY} must be a mapping, got {type(section).__name__}")
    for key in VERL_SAMPLING_KEYS:
        if key in section:
            raise SoftSettingsError(
                f"{SECTION_KEY}.{key} is not allowed: set actor_rollout_ref.rollout.{key} "
                "(and rollout.val_kwargs.* for validation) instead"
            )
    return dict(section)


def soft_config(section: Mapping[str, Any], temperature: float, top_p: float, top_k: int,
                think_end_token_ids: tuple[int, ...] = (), for_training: bool = False) -> SoftThinkingConfig:
    """The rollout's :class:`SoftThinkingConfig`: the section plus verl's sampling values.

    ``think_end_token_ids`` fills the field when the section leaves it unset (the tokenizer's
    ``</think>``); ``top_k`` 0 (vLLM's "off") is verl's -1.
    """
    d = dict(section)
    d.update(temperature=float(temperature), top_p=float(top_p), top_k=-1 if int(top_k) in (0, -1) else int(top_k))
    if not d.get("think_end_token_ids") and not d.get("soft_until_eos", False) and think_end_token_ids:
        d["think_end_token_ids"] = list(think_end_token_ids)
    try:
        cfg = SoftThinkingConfig.from_flags(d)
        return cfg.validate(for_training=for_training and cfg.enable_soft_thinking)
    except (TypeError, ValueError) as err:
        raise SoftSettingsError(f"{SECTION_KEY}: {err}") from err


def validate_section(section: Mapping[str, Any], temperature: float, top_p: float, top_k: int) -> SoftThinkingConfig:
    """Start-up check of the training settings (a placeholder think-end id stands for the tokenizer's)."""
    return soft_config(section, temperature, top_p, top_k, think_end_token_ids=(0,), for_training=True)


def max_topk(section: Mapping[str, Any]) -> int:
    """K of every soft field (``SoftThinkingConfig.max_topk``, default 5)."""
    k = section.get("max_topk", SoftThinkingConfig().max_topk)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise SoftSettingsError(f"{SECTION_KEY}.max_topk={k!r} is invalid: allowed an integer >= 1")
    return k


def logprob_options(cfg: SoftThinkingConfig) -> dict[str, Any]:
    """The estimator options as a plain dict (travels in ``batch.extra_info``)."""
    d = asdict(cfg.logprob_options())
    for key, value in d.items():
        if isinstance(value, tuple):
            d[key] = list(value)
    return d


def logprob_options_from_dict(d: Mapping[str, Any]) -> LogProbOptions:
    kw = dict(d)
    for key in ("gumbel_clamp", "dirichlet_clamp"):
        if kw.get(key) is not None:
            kw[key] = tuple(float(x) for x in kw[key])
    try:
        return LogProbOptions(**kw)
    except TypeError as err:
        raise SoftSettingsError(f"{LOGPROB_OPTIONS_KEY}: {err}") from err
