"""The two points where the SGLang rollout meets the SofT-GRPO SGLang plug-in (GPU path).

* :func:`sglang_soft_params` -- the request's flat ``custom_params`` that make the SGLang plug-in
  decode softly (``soft_thinking.engines.sglang.client.request_flags``: every config field plus the
  request's seed, JSON-safe, as SGLang 0.5.23 requires);
* :func:`decode_sglang_trace` -- the packed rows the plug-in returns in ``meta_info["softgrpo"]``
  (one per output token, ``soft_thinking.engines.sglang.codec``) -> a validated :class:`SoftTrace`;
* :func:`discrete_sglang_trace` -- the trace of a discrete request (stock SGLang sampling, no rows):
  every step discrete, ``ids[t] = [token, 0, ...]``, log-probs = SGLang's ``output_token_logprobs``
  (``log softmax(z / T)[token]``, what verl's ``TokenOutput.log_probs`` carries).

The wire format is the SGLang plug-in's own; this module only calls its codec.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.core.trace import SoftTrace
from soft_thinking.engines.sglang.client import request_flags
from soft_thinking.engines.sglang.codec import TraceError, trace_from_rows
from soft_thinking.engines.sglang.settings import SoftRequest
from soft_thinking.errors import SoftGRPOError
from soft_thinking.text import derive_seed

META_KEY = "softgrpo"


def request_seed(request_id: str) -> int:
    """The noise seed of one verl request (its counter-RNG key; same request id -> same draws)."""
    return derive_seed("softgrpo-verl", request_id)


def sglang_soft_params(sampling_params: dict[str, Any], cfg: SoftThinkingConfig, seed: int) -> dict[str, Any]:
    """``sampling_params`` plus the flat soft settings for the SGLang plug-in (a new dict)."""
    custom = {**(sampling_params.get("custom_params") or {}), **request_flags(cfg, seed)}
    return {**sampling_params, "custom_params": custom}


def decode_sglang_trace(payload: Any, output_ids: Sequence[int], cfg: SoftThinkingConfig, seed: int) -> SoftTrace:
    """``meta_info["softgrpo"]`` (a list of packed rows, one per output token) -> a validated trace."""
    if not isinstance(payload, (list, tuple)) or not all(isinstance(r, (bytes, bytearray)) for r in payload):
        raise SoftGRPOError(f"SGLang meta_info[{META_KEY!r}] has type {type(payload).__name__}: allowed a list of "
                            "bytes rows (one per output token)")
    try:
        return trace_from_rows([bytes(r) for r in payload], output_ids, SoftRequest(cfg, seed))
    except (TraceError, ValueError) as err:
        raise SoftGRPOError(f"SGLang meta_info[{META_KEY!r}] is not a valid soft trace: {err}") from err


def discrete_sglang_trace(output_ids: Sequence[int], log_probs: Sequence[float] | None,
                          cfg: SoftThinkingConfig, engine: str = "SGLang") -> SoftTrace:
    """The discrete trace of a stock-sampled request (module doc; vLLM's too); ``log_probs`` must cover every token."""
    if log_probs is None or len(log_probs) != len(output_ids):
        got = None if log_probs is None else len(log_probs)
        raise SoftGRPOError(f"{engine} returned {got} log-probs for {len(output_ids)} tokens: the discrete arm's trace "
                            "needs actor_rollout_ref.rollout.calculate_log_probs=true")
    t = len(output_ids)
    tokens = torch.tensor(list(output_ids), dtype=torch.int64)
    return SoftTrace(tokens=tokens, ids=tokens.to(torch.int32).reshape(t, 1), q=torch.zeros(t, 1),
                     soft=torch.zeros(t, dtype=torch.bool), logprobs=torch.tensor(list(log_probs), dtype=torch.float32),
                     noise=cfg.effective_noise, tau_g=float(cfg.gumbel_softmax_temperature),
                     temperature=float(cfg.temperature), answer_temperature=float(cfg.temperature), answer_start=0,
                     n_kept=torch.ones(t, dtype=torch.int16)).validate()
