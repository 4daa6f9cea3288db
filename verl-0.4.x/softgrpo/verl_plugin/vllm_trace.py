"""The two points where verl's vLLM request meets the vLLM soft-thinking plug-in (pure; no vLLM import).

* :func:`vllm_soft_params` -- verl's ``sampling_params`` dict turned into a soft request: the flags
  of :func:`soft_thinking.engines.sglang.client.request_flags` (every config field and the seed, the
  plug-in's one parser) plus ``trace_key`` in ``extra_args``; vLLM's own sampler made neutral
  (``temperature=1``, ``top_p=1``, ``top_k=0``): the logits processor leaves one finite logit per soft
  row, so vLLM returns the core's token whatever these are, and the rollout's T/top-p/top-k travel in
  the flags (they are the config's);
* :func:`discrete_vllm_trace` -- the trace of a stock vLLM request: every step discrete,
  ``ids[t] = [token]``, log-probs = vLLM's token log-probs (verl asks for ``logprobs=0``);
* :func:`discrete_logprobs_mode` -- which vLLM ``logprobs_mode`` gives the discrete step's density the
  replay computes, ``log softmax(z / T)[token]`` over the whole vocabulary (the core's discrete
  log-prob). vLLM's ``processed_logprobs`` (verl's default) is taken after top-k/top-p
  (``v1/sample/sampler.py``: renormalised over the kept tokens), ``raw_logprobs`` before temperature:
  the first is exact when top-k/top-p are off, the second when ``T = 1``; otherwise no mode is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.core.trace import SoftTrace
from soft_thinking.engines.sglang.client import request_flags
from soft_thinking.engines.vllm.settings import KEY_FLAG
from soft_thinking.errors import SoftGRPOError
from softgrpo.verl_plugin.sglang_trace import discrete_sglang_trace

NEUTRAL = {"temperature": 1.0, "top_p": 1.0, "top_k": 0}
LOGPROBS_MODES = ("processed_logprobs", "raw_logprobs")


def discrete_logprobs_mode(temperature: float, top_p: float, top_k: int, configured: str) -> str:
    """The ``logprobs_mode`` whose token log-prob is ``log softmax(z / T)`` (module doc), else an error."""
    if configured not in LOGPROBS_MODES:
        raise SoftGRPOError(f"actor_rollout_ref.rollout.logprobs_mode={configured!r} is invalid for the replay: "
                            f"allowed {LOGPROBS_MODES}")
    filtered = (top_k is not None and int(top_k) > 0) or float(top_p) < 1.0
    if not filtered and configured == "processed_logprobs":
        return configured
    if float(temperature) == 1.0:
        return "raw_logprobs"
    if not filtered:
        return "processed_logprobs"
    raise SoftGRPOError(f"actor_rollout_ref.rollout.temperature={temperature} with top_k={top_k}/top_p={top_p}: "
                        "vLLM returns no log softmax(z / T) over the whole vocabulary for the discrete trace; "
                        "allowed temperature 1.0, or top_k -1 and top_p 1.0")


def vllm_soft_params(sampling_params: dict[str, Any], cfg: SoftThinkingConfig, seed: int, key: str) -> dict[str, Any]:
    """``sampling_params`` as a soft vLLM request (module doc); a new dict, ``extra_args`` merged."""
    if not cfg.enable_soft_thinking:
        raise SoftGRPOError("vllm_soft_params needs a soft config (enable_soft_thinking=true)")
    extra = {**(sampling_params.get("extra_args") or {}), **request_flags(cfg, seed), KEY_FLAG: key}
    return {**sampling_params, **NEUTRAL, "extra_args": extra}


def discrete_vllm_trace(output_ids: Sequence[int], log_probs: Sequence[float] | None,
                        cfg: SoftThinkingConfig) -> SoftTrace:
    """The discrete trace of a stock-sampled vLLM request; ``log_probs`` must cover every token."""
    return discrete_sglang_trace(output_ids, log_probs, cfg, engine="vLLM")  # the same trace layout and checks
