"""Batched filtering of next-token distributions with per-row settings (spec §1 steps 1-3).

For a row with logits ``z`` and temperature ``T``:

1. ``p = softmax(z / T)``
2. top-k: keep the ``k`` largest, renormalize;
   top-p: keep the smallest prefix of the sorted distribution whose mass >= ``top_p``, renormalize;
   min-p: drop ``p_i < min_p * max p``, renormalize.
3. candidates: the ``K`` largest filtered entries, ``p~ = p[c] / sum p[c]`` (0 for dropped ones).

Every filter keeps a *prefix* of the sorted distribution, so the candidates are always the first
``K`` entries of ``sort(p)`` with a keep-mask; the mask of entry ``i`` depends only on entries
``< i`` (top-p) or on ``max p`` (min-p). That lets a soft step work on ``topk(p, K)`` instead of a
full sort of the vocabulary.

Greedy rows (``T == 0``) use ``T = 1`` for the distribution (so entropy and a deterministic soft
mixture stay defined) and take the argmax as their token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

# Rows whose nucleus fits in the first PARTIAL_SORT entries avoid sorting the whole vocabulary.
PARTIAL_SORT = 1024


@dataclass
class SamplingTensors:
    """Per-row filter settings for one batch: each field has shape ``[B]``."""

    temperature: Tensor  # float32; 0 = greedy
    top_k: Tensor  # int64; -1 = off
    top_p: Tensor  # float32 in (0, 1]
    min_p: Tensor  # float32 in [0, 1)

    @classmethod
    def build(
        cls,
        batch: int,
        device: torch.device | str,
        temperature: float | Sequence[float],
        top_k: int | Sequence[int],
        top_p: float | Sequence[float],
        min_p: float | Sequence[float],
    ) -> SamplingTensors:
        def vec(x: float | Sequence[float], dtype: torch.dtype) -> Tensor:
            t = torch.as_tensor(x, dtype=dtype, device=device)
            return t.expand(batch).clone() if t.dim() == 0 else t

        return cls(vec(temperature, torch.float32), vec(top_k, torch.int64), vec(top_p, torch.float32), vec(min_p, torch.float32))

    def __getitem__(self, rows: Tensor | slice) -> SamplingTensors:
        return SamplingTensors(self.temperature[rows], self.top_k[rows], self.top_p[rows], self.min_p[rows])

    @property
    def greedy(self) -> Tensor:
        return self.temperature == 0


def log_softmax_at_temperature(logits: Tensor, temperature: float | Tensor) -> Tensor:
    """``log softmax(z / T)`` in float32 (float64 stays float64); ``temperature``: float or ``logits[..., 0]``.

    Builds at most one ``[N, V]`` float32 tensor besides the log-softmax (none when ``T == 1``
    and the logits are already float32). The rollout and the trainer both go through here.
    """
    x = logits.to(torch.promote_types(logits.dtype, torch.float32))
    t = torch.as_tensor(temperature, dtype=x.dtype, device=logits.device)
    if not bool((t == 1).all()):
        t = t.unsqueeze(-1) if t.dim() > 0 else t
        x = x.div_(t) if x is not logits else x / t  # in place on our own float32 copy
    return torch.log_softmax(x, dim=-1)


def scaled_log_probs(logits: Tensor, temperature: Tensor) -> Tensor:
    """``log softmax(z / T)`` per row, greedy rows (``T = 0``) at ``T = 1``.  Shape [B, V]."""
    return log_softmax_at_temperature(logits, torch.where(temperature > 0, temperature, torch.ones_like(temperature)))


def entropy_from_log_probs(logp: Tensor) -> Tensor:
    """``H = -sum_i p_i log p_i`` of the unfiltered distribution (spec §1 step 7)."""
    return -(logp.exp() * logp).sum(-1)


def prefix_keep_mask(
    sorted_p: Tensor, settings: SamplingTensors, vocab_size: int, full_mass: Tensor | None = None
) -> Tensor:
    """Which entries of a descending-sorted prefix ``sorted_p [B, M]`` survive the filters.

    top-k keeps rank ``< k``; after renormalizing by the top-k mass ``Z_k`` (``full_mass`` when
    top-k is off or ``k >= V``: the mass of the whole distribution, 1 for a softmax), top-p keeps
    entry ``i`` iff ``sum_{j<i} p_j / Z_k < top_p`` (the smallest prefix reaching ``top_p``);
    min-p keeps ``p_i >= min_p * p_0``. Entry 0 always survives.
    The caller guarantees ``M >= k`` for every row whose top-k is active (``0 < k < V``).
    """
    b, m = sorted_p.shape
    rank = torch.arange(m, device=sorted_p.device).unsqueeze(0)
    k = settings.top_k.unsqueeze(-1)
    keep = (k < 0) | (rank < k)
    if full_mass is None:
        full_mass = torch.ones(b, dtype=sorted_p.dtype, device=sorted_p.device)
    kept_p = sorted_p * keep
    topk_active = (settings.top_k > 0) & (settings.top_k < vocab_size)
    z_k = torch.where(topk_active, kept_p.sum(-1), full_mass.to(sorted_p.dtype)).unsqueeze(-1)
    exclusive_cumsum = torch.cumsum(kept_p, dim=-1) - kept_p
    top_p = settings.top_p.unsqueeze(-1).to(sorted_p.dtype)
    keep &= (exclusive_cumsum < top_p * z_k) | (top_p >= 1.0)
    keep &= sorted_p >= settings.min_p.unsqueeze(-1).to(sorted_p.dtype) * sorted_p[:, :1]
    keep[:, 0] = True
    return keep


def filtered_candidates(probs: Tensor, max_topk: int, settings: SamplingTensors) -> tuple[Tensor, Tensor, Tensor]:
    """The ``K`` candidates of each row and their renormalized filtered probabilities.

    Returns ``ids [B, K]`` (int64, sorted by probability, descending), ``p~ [B, K]``
    (``p[c] * keep / sum(p[c] * keep)``, 0 for filtered-out candidates) and the number of
    surviving candidates ``n_kept [B]``.
    """
    v = probs.shape[-1]
    k_on = settings.top_k[(settings.top_k > 0) & (settings.top_k < v)]
    m = min(v, max(max_topk, int(k_on.max()) if k_on.numel() else 0))
    vals, idx = probs.topk(m, dim=-1)
    keep = prefix_keep_mask(vals, settings, v, full_mass=probs.sum(-1))[:, :max_topk]
    kept = vals[:, :max_topk] * keep
    p_tilde = kept / kept.sum(-1, keepdim=True)
    return idx[:, :max_topk], p_tilde, keep.sum(-1)


def filtered_sorted(probs: Tensor, settings: SamplingTensors) -> tuple[Tensor, Tensor]:
    """The whole filtered distribution of each row, sorted: ``(ids [B, M], p [B, M])``.

    ``p`` is renormalized and 0 past each row's kept prefix. ``M`` is the smallest width that
    holds every row's kept prefix: the largest top-k when all rows have one, else a partial sort
    of ``PARTIAL_SORT`` entries when every nucleus fits in it, else the vocabulary.
    """
    v = probs.shape[-1]
    k_active = (settings.top_k > 0) & (settings.top_k < v)
    if bool(k_active.all()):
        m = int(settings.top_k.max())
    elif bool((k_active & (settings.top_k > PARTIAL_SORT)).any()):
        m = v
    else:
        m = min(v, PARTIAL_SORT)
    full_mass = probs.sum(-1)
    vals, idx = probs.topk(m, dim=-1)
    keep = prefix_keep_mask(vals, settings, v, full_mass=full_mass)
    if m < v and bool((keep[:, -1] & ~k_active).any()):  # a nucleus may extend past the partial sort
        vals, idx = probs.sort(dim=-1, descending=True)
        keep = prefix_keep_mask(vals, settings, v, full_mass=full_mass)
    kept = vals * keep
    return idx, kept / kept.sum(-1, keepdim=True)


def sample_from_sorted(ids: Tensor, p: Tensor, uniforms: Tensor) -> Tensor:
    """Inverse-CDF sampling: the first ``i`` with ``cumsum(p)_i > u * sum(p)``.  Returns ids [B]."""
    cdf = torch.cumsum(p, dim=-1)
    target = (uniforms.to(cdf.dtype) * cdf[:, -1]).unsqueeze(-1)
    pos = torch.searchsorted(cdf, target, right=True).clamp_max(p.shape[-1] - 1)
    # never land on a zero-probability tail entry because of rounding in the cumsum
    pos = torch.minimum(pos, ((p > 0).sum(-1, keepdim=True) - 1).clamp_min(0))
    return ids.gather(-1, pos).squeeze(-1)
