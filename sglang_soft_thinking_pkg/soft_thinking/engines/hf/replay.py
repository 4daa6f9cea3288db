"""Replay a batch of rollouts through a causal LM: the trainer's view of spec §3.

Layout of one row (left-padded prompt, right-padded response)::

    [pad ... pad | prompt (P tokens) | e_0 ... e_{T-1} | pad ... pad]

Prompt positions take token embeddings; response position ``t`` takes the input the rollout fed
after step ``t`` (``replay_embeddings``: the mixture at soft steps, ``E[token]`` at discrete
ones). The logits at the position before step ``t`` predict it, and
:func:`soft_thinking.core.logprob.step_logprobs` scores each step (the composition of
:func:`~soft_thinking.core.logprob.mixed_logprobs`). With unchanged weights this
reproduces the rollout's log-probs (replay parity).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from soft_thinking.core.logprob import LogProbOptions, step_logprobs
from soft_thinking.core.mixture import replay_embeddings
from soft_thinking.core.sampling import entropy_from_log_probs, log_softmax_at_temperature
from soft_thinking.core.trace import SoftTrace, TraceBatch, collate_traces


def build_replay_inputs(
    embedding_weight: Tensor, prompts: Sequence[Sequence[int]], batch: TraceBatch, pad_id: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """``(inputs_embeds [B, L, D], attention_mask [B, L], position_ids [B, L])`` with ``L = P_max + T``."""
    b, t = batch.tokens.shape
    dev = embedding_weight.device
    p_max = max(len(p) for p in prompts)
    prompt_ids = torch.full((b, p_max), pad_id, dtype=torch.int64, device=dev)
    mask = torch.zeros(b, p_max + t, dtype=torch.int64, device=dev)
    for r, p in enumerate(prompts):
        prompt_ids[r, p_max - len(p) :] = torch.as_tensor(list(p), dtype=torch.int64, device=dev)
        mask[r, p_max - len(p) : p_max] = 1
    mask[:, p_max:] = batch.mask.to(device=dev, dtype=torch.int64)
    with torch.no_grad():
        prompt_emb = embedding_weight[prompt_ids]
        resp_emb = replay_embeddings(
            embedding_weight, batch.ids.to(dev), batch.q.to(dev), batch.soft.to(dev), batch.noise, batch.tau_g.to(dev)
        )
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    return torch.cat([prompt_emb, resp_emb.to(prompt_emb.dtype)], dim=1), mask, positions


def replay_logits(model: Any, prompts: Sequence[Sequence[int]], batch: TraceBatch, pad_id: int = 0) -> Tensor:
    """Logits predicting each response step: ``[B, T, V]`` (gradient flows to the model)."""
    t = batch.tokens.shape[1]
    emb, mask, pos = build_replay_inputs(model.get_input_embeddings().weight, prompts, batch, pad_id)
    out = model(inputs_embeds=emb, attention_mask=mask, position_ids=pos, use_cache=False, logits_to_keep=t + 1)
    return out.logits[:, :-1, :]


def replay_logprobs(
    model: Any,
    prompts: Sequence[Sequence[int]],
    traces: Sequence[SoftTrace] | TraceBatch,
    opts: LogProbOptions,
    pad_id: int = 0,
) -> tuple[Tensor, TraceBatch]:
    """Recomputed per-step log-probs ``[B, T]`` (float32) and the collated batch (for its mask)."""
    lp, _, batch = replay_logprobs_entropy(model, prompts, traces, opts, pad_id, with_entropy=False)
    return lp, batch


def replay_logprobs_entropy(
    model: Any,
    prompts: Sequence[Sequence[int]],
    traces: Sequence[SoftTrace] | TraceBatch,
    opts: LogProbOptions,
    pad_id: int = 0,
    with_entropy: bool = True,
) -> tuple[Tensor, Tensor | None, TraceBatch]:
    """As :func:`replay_logprobs`, plus the (detached) entropy ``[B, T]`` of each step's distribution."""
    batch = traces if isinstance(traces, TraceBatch) else collate_traces(traces)
    dev = model.get_input_embeddings().weight.device
    batch = batch.to(dev)
    logits = replay_logits(model, prompts, batch, pad_id)
    logp = log_softmax_at_temperature(logits, batch.temperatures)
    lp = step_logprobs(logp, batch.tokens, batch.ids, batch.q, batch.soft, batch.noise, opts, batch.n_kept)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = entropy_from_log_probs(logp.detach())
    return lp, entropy, batch
