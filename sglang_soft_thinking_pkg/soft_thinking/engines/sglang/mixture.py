"""The soft input of a decode step, computed inside SGLang's decode CUDA graph.

For the rows of a decode batch (slots ``rows = forward_batch.req_pool_indices``)::

    e_all = embed([input_ids, ids[rows].flatten()])        ONE call of the model's own embedding module
    tok, cand = e_all[:B], e_all[B:].view(B, K, D)
    mix = (w / sum w).to(dtype) @ cand                      core.mixture.mix_embeddings' arithmetic
    input_embeds = where(mix_on[rows], mix, tok)            discrete rows: bit-identical to embed(input_ids)

``embed`` is SGLang's ``VocabParallelEmbedding``: under tensor parallelism it masks the ids outside
its shard, looks them up, zeroes the masked rows and all-reduces, so one call on ``B (K + 1)`` ids
gives full rows on every rank. Tensor ops only: no branch on data, no host sync; the table is read,
never written, inside the graph (0.5.12 leaves stale slot ids in padded rows).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


def mixed_input_embeds(embed: Callable[[Tensor], Tensor], input_ids: Tensor, ids: Tensor, weights: Tensor,
                       mix_on: Tensor) -> Tensor:
    """``where(mix_on, sum_k w_k E[ids_k], E[input_ids])`` for ``input_ids [B]``, ``ids/weights [B, K]``, ``mix_on [B]``."""
    b, k = ids.shape
    e_all = embed(torch.cat([input_ids.reshape(-1), ids.reshape(-1).to(input_ids.dtype)]))
    tok, cand = e_all[:b], e_all[b:].view(b, k, -1)
    w = weights.to(torch.float32)
    w = (w / w.sum(-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)).to(cand.dtype)
    mix = (w.unsqueeze(-2) @ cand).squeeze(-2)
    return torch.where(mix_on.unsqueeze(-1), mix, tok)


def wrap_forward(model: Any, table: Any, embed: Callable[[Tensor], Tensor]) -> None:
    """Replace ``model.forward`` (on the instance) by one that feeds decode steps their soft inputs.

    ``table`` has ``ids [R, K]``, ``w [R, K]``, ``mix_on [R]``. Extend/prefill and calls that
    already pass ``input_embeds`` go through unchanged. ``functools.wraps`` keeps the signature
    SGLang's graph runner inspects (``pp_proxy_tensors``, ``input_embeds``).
    """
    original = model.forward

    @functools.wraps(original)
    def forward(input_ids: Tensor, positions: Tensor, forward_batch: Any, *args: Any, **kwargs: Any) -> Any:
        if forward_batch.forward_mode.is_decode() and not args and kwargs.get("input_embeds") is None:
            rows = forward_batch.req_pool_indices
            kwargs["input_embeds"] = mixed_input_embeds(
                embed, input_ids, table.ids[rows], table.w[rows], table.mix_on[rows]
            )
        return original(input_ids, positions, forward_batch, *args, **kwargs)

    forward.__softgrpo_wrapped__ = True  # type: ignore[attr-defined]
    model.forward = forward
