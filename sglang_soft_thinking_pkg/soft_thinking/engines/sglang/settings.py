"""Per-request soft-thinking settings from SGLang's flat ``sampling_params.custom_params``.

A request is soft when its flags say ``enable_soft_thinking: true``. The flags are flat and
JSON-safe (sglang 0.5.23 requires it): scalars or flat lists, under the original project's names
(``max_topk``, ``gumbel_softmax_temperature``, ``noise_factor``, ``add_noise_gumbel_softmax``,
``after_thinking_*``, ``early_stopping_*``, ...; every :class:`SoftThinkingConfig` field) plus

- ``think_end_ids``: the think-end token ids (alias of ``think_end_token_ids``);
- ``seed``: the request's 63-bit RNG seed (:func:`soft_thinking.engines.base.sample_seed`);
- ``on_retract``: ``mark`` (default: count it, flag the trace) or ``abort``.

Flags are merged in this order: the plug-in's base (soft thinking off), the JSON of
``SOFTGRPO_SGLANG_CONFIG`` (a file path or an inline ``{...}``), the request's own flags. The
thinking filters ``temperature / top_p / top_k / min_p`` default to the request's
``SamplingParams`` values; SGLang rewrites ``temperature=0`` into ``temperature=1, top_k=1``, so a
greedy soft request passes ``temperature: 0`` in its flags.

A soft request refuses what its step cannot honour (penalties, ``min_new_tokens``, logit bias,
grammars, top log-probs, hidden states) and any top-k wider than the plug-in's candidate width
``M``; the answer phase samples from the top-``M`` prefix, so its ``after_thinking_top_k`` must be
in ``[1, M]``. Every error names the key and the allowed values.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soft_thinking.core.config import ConfigError, SoftThinkingConfig
from soft_thinking.errors import SoftGRPOError

MODE_ENV = "SOFTGRPO_SGLANG"
CONFIG_ENV = "SOFTGRPO_SGLANG_CONFIG"
MAX_TOPK_ENV = "SOFTGRPO_SGLANG_MAX_TOPK"
WIDTH_ENV = "SOFTGRPO_SGLANG_WIDTH"
KINDS_ENV = "SOFTGRPO_SGLANG_NOISE_KINDS"
MODES = ("off", "on", "require")
ON_RETRACT = ("mark", "abort")
ALIASES = {"think_end_ids": "think_end_token_ids"}
PLUGIN_KEYS = ("seed", "on_retract")
SEED_LIMIT = 1 << 63
TOP_K_ALL = 1 << 30  # SGLang's "whole vocabulary" top_k (sampling_params.TOP_K_ALL)
FILTERS = ("temperature", "top_p", "top_k", "min_p")


class SettingsError(SoftGRPOError, ValueError):
    """A soft request's settings cannot be honoured; the message names the key and the allowed values."""


def plugin_mode(environ: Mapping[str, str] = os.environ) -> str:
    """``off`` (default), ``on`` (refuse only soft requests when incompatible) or ``require`` (refuse start-up)."""
    mode = environ.get(MODE_ENV, "off").strip().lower() or "off"
    if mode not in MODES:
        raise SettingsError(f"{MODE_ENV}={mode!r} is invalid: allowed {MODES}")
    return mode


def server_widths(environ: Mapping[str, str] = os.environ) -> tuple[int, int]:
    """``(k_max, M)``: the slot table's K width and the candidate width of the step (static, per server).

    ``SOFTGRPO_SGLANG_MAX_TOPK`` (default 32) and ``SOFTGRPO_SGLANG_WIDTH`` (default = k_max).
    """
    out = []
    for name, default in ((MAX_TOPK_ENV, "32"), (WIDTH_ENV, None)):
        raw = environ.get(name) or (default if default is not None else str(out[0]))
        if not raw.isdigit() or int(raw) < 1:
            raise SettingsError(f"{name}={raw!r} is invalid: allowed an integer >= 1")
        out.append(int(raw))
    if out[1] < out[0]:
        raise SettingsError(f"{WIDTH_ENV}={out[1]} is invalid: allowed >= {MAX_TOPK_ENV} ({out[0]})")
    return out[0], out[1]


def server_kinds(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The noise kinds the server's step draws: ``SOFTGRPO_SGLANG_NOISE_KINDS`` (comma-separated, default all).

    The step computes only these kinds (fewer kernels); a soft request of another kind is refused.
    """
    from soft_thinking.core.config import NOISE_KINDS

    raw = environ.get(KINDS_ENV, "").strip()
    if not raw:
        return tuple(NOISE_KINDS)
    kinds = tuple(dict.fromkeys(k.strip() for k in raw.split(",") if k.strip()))
    if not kinds or any(k not in NOISE_KINDS for k in kinds):
        raise SettingsError(f"{KINDS_ENV}={raw!r} is invalid: allowed a comma-separated subset of {tuple(NOISE_KINDS)}")
    return kinds


def default_flags(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The server-wide default flags: ``SOFTGRPO_SGLANG_CONFIG`` as a JSON file path or inline JSON."""
    raw = environ.get(CONFIG_ENV, "").strip()
    if not raw:
        return {}
    try:
        text = raw if raw.startswith("{") else Path(raw).read_text()
        flags = json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        raise SettingsError(f"{CONFIG_ENV}={raw!r}: not a readable JSON file or inline JSON object ({exc})") from exc
    if not isinstance(flags, dict):
        raise SettingsError(f"{CONFIG_ENV} must hold a JSON object of flags, got {type(flags).__name__}")
    check_json_safe(flags, where=CONFIG_ENV)
    return flags


def check_json_safe(flags: Mapping[str, Any], where: str = "custom_params") -> None:
    """Flat JSON-safe values only: scalars or flat lists of scalars."""
    scalar = (bool, int, float, str, type(None))
    for key, value in flags.items():
        flat_list = isinstance(value, (list, tuple)) and all(isinstance(v, scalar) for v in value)
        if not (isinstance(value, scalar) or flat_list):
            raise SettingsError(f"{where}[{key!r}]={value!r} is invalid: allowed a scalar or a flat list of scalars")


@dataclass(frozen=True)
class SoftRequest:
    """What the plug-in keeps per soft request."""

    config: SoftThinkingConfig
    seed: int
    on_retract: str = "mark"


@dataclass(frozen=True)
class SamplingView:
    """The SGLang ``SamplingParams`` fields the plug-in reads (duck-typed from the real object)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    min_new_tokens: int = 0
    logit_bias: Any = None
    regex: Any = None
    json_schema: Any = None
    ebnf: Any = None
    structural_tag: Any = None

    @classmethod
    def of(cls, sp: Any) -> SamplingView:
        names = cls.__dataclass_fields__
        return cls(**{n: getattr(sp, n, names[n].default) for n in names})


def unsupported(sp: SamplingView, top_logprobs_num: int = 0, token_ids_logprob: Any = None,
                return_hidden_states: bool = False) -> list[str]:
    """What a soft request may not combine with (one message per problem)."""
    out = []
    for name, neutral in (("frequency_penalty", 0.0), ("presence_penalty", 0.0), ("repetition_penalty", 1.0),
                          ("min_new_tokens", 0)):
        if getattr(sp, name) != neutral:
            out.append(f"{name}={getattr(sp, name)!r} (soft requests allow only {neutral!r}: penalties act on logits "
                       "the soft step does not read)")
    if sp.logit_bias:
        out.append("logit_bias (not applied by the soft step)")
    for name in ("regex", "json_schema", "ebnf", "structural_tag"):
        if getattr(sp, name) is not None:
            out.append(f"{name} (grammars are not supported with soft thinking)")
    if top_logprobs_num:
        out.append(f"top_logprobs_num={top_logprobs_num} (top log-probs would describe the wrong distribution)")
    if token_ids_logprob:
        out.append("token_ids_logprob (not supported with soft thinking)")
    if return_hidden_states:
        out.append("return_hidden_states (not supported with soft thinking)")
    return out


def parse_soft_request(
    custom_params: Mapping[str, Any] | None,
    sp: SamplingView,
    *,
    defaults: Mapping[str, Any],
    k_max: int,
    width: int,
    vocab_size: int | None = None,
) -> SoftRequest | None:
    """The request's :class:`SoftRequest`, or ``None`` for a discrete (stock) request.

    Raises :class:`SettingsError` naming the first bad key.
    """
    own = {k: v for k, v in (custom_params or {}).items() if not k.startswith("__")}  # "__req__": SGLang's
    check_json_safe(own)
    flags = {"enable_soft_thinking": False, **defaults, **own}
    if not flags.get("enable_soft_thinking"):
        return None
    problems = unsupported(sp)
    if problems:
        raise SettingsError("soft request: " + "; ".join(problems))
    seed = flags.pop("seed", None)
    on_retract = flags.pop("on_retract", "mark")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise SettingsError(f"custom_params['seed']={seed!r} is invalid: allowed an integer in [0, 2**63) "
                            "(every soft request needs its own seed, e.g. soft_thinking.engines.base.sample_seed)")
    if on_retract not in ON_RETRACT:
        raise SettingsError(f"custom_params['on_retract']={on_retract!r} is invalid: allowed {ON_RETRACT}")
    sampled = {"temperature": sp.temperature, "top_p": sp.top_p, "top_k": -1 if sp.top_k >= TOP_K_ALL else sp.top_k,
               "min_p": sp.min_p}
    for name in FILTERS:
        flags.setdefault(name, sampled[name])
    try:
        cfg = SoftThinkingConfig.from_flags(flags, aliases=ALIASES).validate(vocab_size=vocab_size)
    except ConfigError as exc:
        raise SettingsError(f"soft request: {exc}") from exc
    if cfg.max_topk > k_max:
        raise SettingsError(f"custom_params['max_topk']={cfg.max_topk} is invalid: allowed 1..{k_max} "
                            "(the slot table width, SOFTGRPO_SGLANG_MAX_TOPK)")
    if cfg.top_k > width:
        raise SettingsError(f"top_k={cfg.top_k} is invalid for a soft request: allowed -1 (off) or 1..{width} "
                            "(the plug-in's candidate width M)")
    if not 1 <= cfg.answer_top_k <= width and not (cfg.compat_stale_phase_mask or cfg.answer_temperature == 0):
        raise SettingsError(f"after_thinking_top_k={cfg.answer_top_k} is invalid for a soft request: allowed "
                            f"1..{width} (the answer phase samples from the top-{width} prefix)")
    return SoftRequest(cfg, int(seed), on_retract)
