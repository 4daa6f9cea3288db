"""Wrapper architectures whose forward feeds soft steps their mixtures (``SoftGRPO<Arch>``).

Registered by :func:`soft_thinking.vllm_plugin.register` with vLLM's ``ModelRegistry`` and chosen
per engine with ``hf_overrides={"architectures": ["SoftGRPOLlamaForCausalLM"]}`` (the client does
it). The forward always embeds the ids itself (``embed_input_ids``, the model's own embedding) and
passes ``inputs_embeds``, so a compiled graph sees one signature; with soft rows in the batch the
rows of generated soft tokens are replaced by ``sum_i w_i E[ids_i]``
(:meth:`~soft_thinking.engines.vllm.state.SoftState.soft_inputs`). Rows are matched to requests
through the forward context's attention metadata (``query_start_loc``) and ``positions``.
"""

from __future__ import annotations

from typing import Any

import torch
from vllm.forward_context import get_forward_context, is_forward_context_available
from vllm.model_executor.models.llama import LlamaForCausalLM
from vllm.model_executor.models.qwen2 import Qwen2ForCausalLM

from soft_thinking.engines.vllm import state as soft_state

PREFIX = "SoftGRPO"
BASES = {"LlamaForCausalLM": LlamaForCausalLM, "Qwen2ForCausalLM": Qwen2ForCausalLM}


def query_start_loc() -> torch.Tensor | None:
    """``query_start_loc`` of the current forward (batch index ``i`` owns rows ``[q[i], q[i+1])``)."""
    if not is_forward_context_available():
        return None
    meta = get_forward_context().attn_metadata
    if not meta:
        return None
    if isinstance(meta, list):
        raise RuntimeError("softgrpo: micro-batched attention metadata (DBO) is not supported")
    return next(iter(meta.values())).query_start_loc


class SoftInputsMixin:
    """``forward`` that passes ``inputs_embeds`` with the soft steps' mixtures (module doc)."""

    def forward(self, input_ids: torch.Tensor | None, positions: torch.Tensor, intermediate_tensors: Any = None,
                inputs_embeds: torch.Tensor | None = None, **kwargs: Any) -> Any:
        st = soft_state.STATE
        qsl = query_start_loc()
        if st is not None and inputs_embeds is None and input_ids is not None and qsl is not None:
            n = input_ids.shape[0]
            inputs_embeds = st.soft_inputs(self.embed_input_ids, self.model.embed_tokens.weight, input_ids,
                                           positions[:n], qsl)
            input_ids = None
        return super().forward(input_ids, positions, intermediate_tensors, inputs_embeds, **kwargs)


class SoftGRPOLlamaForCausalLM(SoftInputsMixin, LlamaForCausalLM):
    pass


class SoftGRPOQwen2ForCausalLM(SoftInputsMixin, Qwen2ForCausalLM):
    pass

