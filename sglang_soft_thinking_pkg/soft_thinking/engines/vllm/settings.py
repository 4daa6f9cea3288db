"""Per-request soft-thinking settings from vLLM's ``SamplingParams.extra_args``.

A request is soft when ``extra_args`` says ``enable_soft_thinking: true``; its flags are the SGLang
client's (:func:`soft_thinking.engines.sglang.client.request_flags`: every
:class:`~soft_thinking.core.config.SoftThinkingConfig` field under the original's names, ``seed``)
plus ``trace_key``, the string under which the worker keeps the request's trace. Parsing, the
refusals and the server-wide fields are the SGLang plug-in's (one parser, two engines); this module
only adapts vLLM's names and adds vLLM's own refusals:

- ``n > 1`` (submit ``n`` requests with distinct seeds), ``SamplingParams.seed`` (the soft step draws
  from the core's counter RNG keyed by ``extra_args['seed']``), ``logprobs > 0``, ``prompt_logprobs``,
  ``allowed_token_ids``, ``bad_words``, ``logit_bias``, ``min_tokens``, penalties, structured outputs:
  each acts on logits before or after the soft step and would describe or change another distribution.

Environment (read in every vLLM process): ``SOFTGRPO_VLLM_MAX_TOPK`` (the largest K, default 8),
``SOFTGRPO_VLLM_WIDTH`` (the candidate width M, default 32; soft ``top_k`` must fit in it),
``SOFTGRPO_VLLM_CONFIG`` (server-wide default flags, a JSON file or inline object).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from soft_thinking.engines.sglang.hooks import PluginState
from soft_thinking.engines.sglang.settings import SamplingView, SettingsError, SoftRequest, default_flags

MAX_TOPK_ENV = "SOFTGRPO_VLLM_MAX_TOPK"
WIDTH_ENV = "SOFTGRPO_VLLM_WIDTH"
CONFIG_ENV = "SOFTGRPO_VLLM_CONFIG"
KEY_FLAG = "trace_key"
DEFAULT_MAX_TOPK, DEFAULT_WIDTH = 8, 32

__all__ = ["KEY_FLAG", "SettingsError", "VLLMSoftRequest", "parse_request", "plugin_state"]


@dataclass(frozen=True)
class VLLMSoftRequest:
    """A parsed soft request and the key its trace is kept under."""

    request: SoftRequest
    key: str


def _int_env(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip() or str(default)
    if not raw.isdigit() or int(raw) < 1:
        raise SettingsError(f"{name}={raw!r} is invalid: allowed an integer >= 1")
    return int(raw)


def plugin_state(environ: Mapping[str, str] = os.environ) -> PluginState:
    """The widths and server defaults of this process (the SGLang plug-in's :class:`PluginState`)."""
    k_max = _int_env(environ, MAX_TOPK_ENV, DEFAULT_MAX_TOPK)
    width = _int_env(environ, WIDTH_ENV, max(DEFAULT_WIDTH, k_max))
    if width < k_max:
        raise SettingsError(f"{WIDTH_ENV}={width} is invalid: allowed >= {MAX_TOPK_ENV} ({k_max})")
    return PluginState("on", default_flags({"SOFTGRPO_SGLANG_CONFIG": environ.get(CONFIG_ENV, "")}), k_max, width)


def sampling_view(sp: Any) -> SamplingView:
    """vLLM's ``SamplingParams`` under the names the shared parser reads (``top_k <= 0`` is off)."""
    top_k = int(getattr(sp, "top_k", 0) or 0)
    return SamplingView(
        temperature=float(sp.temperature), top_p=float(sp.top_p), top_k=top_k if top_k > 0 else -1,
        min_p=float(sp.min_p), frequency_penalty=float(sp.frequency_penalty),
        presence_penalty=float(sp.presence_penalty), repetition_penalty=float(sp.repetition_penalty),
        min_new_tokens=int(sp.min_tokens), logit_bias=sp.logit_bias, regex=getattr(sp, "structured_outputs", None),
    )


def _vllm_refusals(sp: Any) -> list[str]:
    out = []
    if sp.n != 1:
        out.append(f"n={sp.n} (allowed 1: submit n requests with distinct extra_args['seed'])")
    if sp.seed is not None:
        out.append(f"seed={sp.seed} (allowed None: the soft step draws from extra_args['seed'])")
    if sp.logprobs:
        out.append(f"logprobs={sp.logprobs} (allowed None or 0: top log-probs would describe the wrong distribution)")
    if sp.prompt_logprobs is not None:
        out.append("prompt_logprobs (not supported with soft thinking)")
    for name in ("allowed_token_ids", "bad_words"):
        if getattr(sp, name, None):
            out.append(f"{name} (masks logits the soft step reads)")
    return out


def parse_request(sp: Any, state: PluginState, vocab_size: int | None = None) -> VLLMSoftRequest | None:
    """The request's settings from ``sp.extra_args``, or ``None`` for a plain (stock) request.

    Raises :class:`SettingsError` naming the first bad key and the allowed values.
    """
    args = dict(sp.extra_args or {})
    key = args.pop(KEY_FLAG, None)
    flags = {k: v for k, v in args.items() if not k.startswith("_")}  # "_..." keys: other processors'
    try:
        req = state.parse(flags, sampling_view(sp), vocab_size)
    except SettingsError as exc:  # the shared parser names SGLang's variable for the server-wide defaults
        raise SettingsError(str(exc).replace("SOFTGRPO_SGLANG_CONFIG", CONFIG_ENV)) from exc
    if req is None:
        return None
    problems = _vllm_refusals(sp)
    if problems:
        raise SettingsError("soft request: " + "; ".join(problems))
    if not isinstance(key, str) or not key:
        raise SettingsError(f"extra_args[{KEY_FLAG!r}]={key!r} is invalid: allowed a non-empty string, unique per "
                            "request (the key its trace is popped by)")
    return VLLMSoftRequest(req, key)
