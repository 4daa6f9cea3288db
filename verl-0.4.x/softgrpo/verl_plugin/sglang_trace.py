"""The two points where the SGLang rollout meets the SofT-GRPO SGLang plug-in (GPU path).

* :func:`sglang_soft_params` -- what a request carries so the SGLang plug-in decodes softly;
* :func:`decode_sglang_trace` -- the trace the plug-in returns in ``meta_info["softgrpo"]``.

ADAPT HERE when the SGLang plug-in's codec lands in ``soft_thinking.engines.sglang``: both functions
assume the plug-in sends its settings as ``sampling_params["custom_params"]["softgrpo"]`` (the
``SoftThinkingConfig`` flags) and returns the trace as ``SoftTrace.to_bytes()`` (the one trace
wire format). Nothing else in the verl plug-in depends on that wire format.
"""

from __future__ import annotations

from typing import Any

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.core.trace import SoftTrace
from soft_thinking.errors import SoftGRPOError

META_KEY = "softgrpo"


def sglang_soft_params(sampling_params: dict[str, Any], cfg: SoftThinkingConfig) -> dict[str, Any]:
    """``sampling_params`` plus the soft settings for the SGLang plug-in (a new dict)."""
    custom = dict(sampling_params.get("custom_params") or {})
    custom[META_KEY] = cfg.to_dict()
    return {**sampling_params, "custom_params": custom}


def decode_sglang_trace(payload: Any) -> SoftTrace:
    """``meta_info["softgrpo"]`` -> a validated :class:`SoftTrace`."""
    try:
        if isinstance(payload, (bytes, bytearray, memoryview)):
            return SoftTrace.from_bytes(bytes(payload))
    except (ValueError, KeyError) as err:
        raise SoftGRPOError(f"SGLang meta_info[{META_KEY!r}] is not a valid soft trace: {err}") from err
    raise SoftGRPOError(f"SGLang meta_info[{META_KEY!r}] has type {type(payload).__name__}: allowed bytes")
