"""The soft input embedding (spec §1 step 5): ``e = sum_i w_i E[c_i]``.

Only the ``K`` candidate rows of the embedding matrix are gathered (``[B, K, D]``); nothing of
size ``V`` per row is built. Weights are renormalized to sum to 1 and the weighted sum is done
in the embedding's dtype, so a one-hot weight vector (or ``K = 1``) returns ``E[c_0]`` exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


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
