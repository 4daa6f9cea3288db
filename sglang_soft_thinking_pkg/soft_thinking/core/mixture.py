"""The soft input embedding (spec §1 step 5): ``e = sum_i w_i E[c_i]``.

Only the ``K`` candidate rows of the embedding matrix are gathered (``[B, K, D]``); nothing of
size ``V`` per row is built. Weights are renormalized to sum to 1 and the weighted sum is done
in the embedding's dtype, so a one-hot weight vector (or ``K = 1``) returns ``E[c_0]`` exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from soft_thinking.core.noise import mixture_weights


def mix_embeddings(embedding_weight: Tensor, ids: Tensor, weights: Tensor) -> Tensor:
    """``e_b = sum_i (w_bi / sum_j w_bj) * E[ids_bi]``.

    Args:
        embedding_weight: ``E [V, D]``.
        ids: candidate ids ``[..., K]``.
        weights: non-negative weights ``[..., K]``.
    Returns:
        ``[..., D]`` in the dtype of ``E``.
    """
    if ids.shape != weights.shape:
        raise ValueError(f"ids {tuple(ids.shape)} and weights {tuple(weights.shape)} must have the same shape")
    w = weights.to(torch.float32)
    w = (w / w.sum(-1, keepdim=True)).to(embedding_weight.dtype)
    emb = F.embedding(ids.long(), embedding_weight)  # [..., K, D]
    return (w.unsqueeze(-2) @ emb).squeeze(-2)


def step_weights(q: Tensor, soft: Tensor, noise: str, tau_g: float | Tensor) -> Tensor:
    """Mixture weights of stored steps: ``weights(q)`` at soft steps, ``[1, 0, ...]`` at discrete ones.

    ``q [..., K]``, ``soft [...]``; ``tau_g`` is a float or broadcasts to ``soft``'s shape (a
    per-sequence ``[B]`` tensor is expanded over the steps of ``[B, T]`` inputs).
    """
    tau = torch.as_tensor(tau_g, dtype=torch.float32, device=q.device)
    if tau.dim() == 1 and soft.dim() == 2:
        tau = tau.unsqueeze(-1).expand_as(soft)
    w = mixture_weights(q, noise, tau)
    first = torch.zeros_like(w)
    first[..., 0] = 1.0
    return torch.where(soft.unsqueeze(-1), w, first)


def replay_embeddings(
    embedding_weight: Tensor, ids: Tensor, q: Tensor, soft: Tensor, noise: str, tau_g: float | Tensor
) -> Tensor:
    """The inputs a rollout fed after each step, rebuilt from its trace (no gradient through them).

    ``e_t = sum_i w_ti E[ids_ti]`` with ``w = step_weights(q, soft)``: the trainer's replay of
    spec §3, the same :func:`mix_embeddings` the rollout used.
    """
    with torch.no_grad():
        return mix_embeddings(embedding_weight, ids, step_weights(q, soft, noise, tau_g))
