"""The V1 logits processor that runs the soft step (vllm 0.28 ``v1/sample/logits_processor/interface.py``).

Passed to an engine as ``LLM(logits_processors=[SoftThinkingLogitsProcessor])`` (see
:func:`soft_thinking.engines.vllm.client.engine_kwargs`). vLLM calls, per step:

- ``validate_params(SamplingParams)`` in the front end, for every request: a bad soft request is
  refused there with one message naming the key; the engine keeps running;
- ``update_state(BatchUpdate | None)`` before the forward (``InputBatch.refresh_metadata``);
- ``apply(logits [num_reqs, V])`` in the sampler, after allowed-ids / bad-words masks and before
  penalties, temperature, top-k/top-p and sampling. Not argmax-invariant: it forces soft rows.

With no soft request in the batch both are no-ops (``update_state`` returns, ``apply`` returns the
logits untouched). vLLM's Model Runner V2 has another processor interface; the client refuses it at
start-up (``VLLM_USE_V2_MODEL_RUNNER=0``).
"""

from __future__ import annotations

from typing import Any

import torch
from vllm.v1.sample.logits_processor.interface import BatchUpdate, LogitsProcessor

from soft_thinking.engines.sglang.settings import SettingsError
from soft_thinking.engines.vllm import state as soft_state
from soft_thinking.engines.vllm.settings import parse_request, plugin_state


class SoftThinkingLogitsProcessor(LogitsProcessor):
    """Soft thinking's batched step inside vLLM's sampler (module doc)."""

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        try:
            parse_request(sampling_params, plugin_state())
        except SettingsError as exc:
            raise ValueError(str(exc)) from exc

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        if vllm_config.speculative_config is not None:
            raise SettingsError("soft thinking refuses speculative_config (speculative decoding samples several "
                                "tokens per request per step)")
        if vllm_config.parallel_config.pipeline_parallel_size > 1 or vllm_config.parallel_config.tensor_parallel_size > 1:
            raise SettingsError("soft thinking refuses pipeline_parallel_size > 1 and tensor_parallel_size > 1 "
                                "(untested: the mixture uses the local embedding shard)")
        mc, sc = vllm_config.model_config, vllm_config.scheduler_config
        self.state = soft_state.SoftState(
            max_reqs=sc.max_num_seqs, max_len=mc.max_model_len, vocab_size=mc.get_vocab_size(), device=device,
            prefix_caching=bool(vllm_config.cache_config.enable_prefix_caching),
        )
        soft_state.STATE = self.state

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        self.state.update(batch_update)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        return self.state.step(logits)
