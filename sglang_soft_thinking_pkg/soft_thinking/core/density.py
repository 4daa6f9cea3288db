"""Log-densities of the stored noise values of a soft step (spec §3): one function per noise kind and mode.

Each takes the candidates' log-probs under the policy ``cand_logp [N, K]`` (``log softmax(z/T)[c]``),
the stored ``q [N, K]``, the estimator options and an optional ``valid [N, K]`` mask (``False`` for
padding columns of rows with fewer than ``K`` candidates), and returns ``[N]``::

    log p'_i = lp_i - logsumexp_{j valid} lp_j                 (renormalized over the valid ids)

    gumbel, paper:  l'_i = log(p'_i + 1e-6),  g'_i = clamp(q_i - l'_i, -1.5, 3),
                    phi(g) = -g - exp(-g),    mean over {i valid : l'_i > -3} of phi(g'_i)
    gumbel, exact:  sum over valid i of phi(q_i - l'_i)        (no clamp, no floor)
    dirichlet:      mean over {p'_i > 0.05} of clamp((a-1) log x - x - lgamma(a), -5, 3),  a = alpha p'
    gaussian:       mean over {p'_i > 0.05} of -(x - p')^2 / (2 sigma^2) - log sigma - log(2 pi) / 2
    none:           0   (a deterministic mixture has no density)

A masked mean over an empty set is 0. The noise registry (:mod:`soft_thinking.core.noise`) maps
each kind and mode to these functions; :mod:`soft_thinking.core.logprob` scores steps with them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

LOG_EPS = 1e-6  # the "+1e-6" inside log(p~ + 1e-6), shared by the Gumbel draw and its density

SoftDensity = Callable[..., Tensor]  # (cand_logp, q, opts, valid=None) -> [N]


def renormalized_log_probs(cand_logp: Tensor, valid: Tensor | None = None) -> Tensor:
    """``log p'_i = lp_i - logsumexp_j lp_j`` over the valid candidate ids (``-inf`` where invalid)."""
    if valid is not None:
        cand_logp = cand_logp.masked_fill(~valid, float("-inf"))
    return cand_logp - torch.logsumexp(cand_logp, dim=-1, keepdim=True)


def gumbel_log_density(g: Tensor) -> Tensor:
    """``phi(g) = -g - exp(-g)``, the log-density of Gumbel(0, 1)."""
    return -g - torch.exp(-g)


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """``sum(values * mask) / max(|mask|, 1)`` over the last dim (0 for an empty mask)."""
    m = mask.to(values.dtype)
    return (values * m).sum(-1) / m.sum(-1).clamp_min(1.0)


def _valid(mask: Tensor, valid: Tensor | None) -> Tensor:
    return mask if valid is None else mask & valid


def gumbel_step_logprob(cand_logp: Tensor, q: Tensor, opts: Any, valid: Tensor | None = None) -> Tensor:
    """Paper estimator: masked mean of ``phi(clamp(q - log(p' + 1e-6)))`` over ``l' > floor``."""
    ell = torch.log(renormalized_log_probs(cand_logp, valid).exp() + LOG_EPS)
    g = q.to(ell.dtype) - ell
    if opts.gumbel_clamp is not None:
        g = g.clamp(opts.gumbel_clamp[0], opts.gumbel_clamp[1])
    return masked_mean(gumbel_log_density(g), _valid(ell > opts.logp_floor, valid))


def gumbel_step_logprob_exact(cand_logp: Tensor, q: Tensor, opts: Any, valid: Tensor | None = None) -> Tensor:
    """Exact variant: ``sum_i phi(q_i - log(p'_i + 1e-6))`` over the valid candidates, no clamp, no mask."""
    ell = torch.log(renormalized_log_probs(cand_logp, valid).exp() + LOG_EPS)
    phi = gumbel_log_density(q.to(ell.dtype) - ell)
    return phi.sum(-1) if valid is None else torch.where(valid, phi, torch.zeros_like(phi)).sum(-1)


def dirichlet_step_logprob(cand_logp: Tensor, x: Tensor, opts: Any, valid: Tensor | None = None) -> Tensor:
    """Mean over ``p' > 0.05`` of ``clamp((a-1) log x - x - lgamma(a), -5, 3)``, ``a = alpha p'``."""
    p = renormalized_log_probs(cand_logp, valid).exp()
    a = (opts.dirichlet_alpha * p).clamp_min(1e-8)
    xs = x.to(p.dtype).clamp_min(torch.finfo(torch.float32).tiny)
    lp = ((a - 1) * torch.log(xs) - xs - torch.lgamma(a)).clamp(*opts.dirichlet_clamp)
    return masked_mean(lp, _valid(p > opts.p_floor, valid))


def gaussian_step_logprob(cand_logp: Tensor, x: Tensor, opts: Any, valid: Tensor | None = None) -> Tensor:
    """Mean over ``p' > 0.05`` of ``-(x - p')^2 / (2 sigma^2) - log sigma - log(2 pi) / 2``."""
    p = renormalized_log_probs(cand_logp, valid).exp()
    s = opts.gaussian_sigma
    lp = -((x.to(p.dtype) - p) ** 2) / (2 * s * s) - math.log(s) - 0.5 * math.log(2 * math.pi)
    return masked_mean(lp, _valid(p > opts.p_floor, valid))


def none_step_logprob(cand_logp: Tensor, q: Tensor, opts: Any, valid: Tensor | None = None) -> Tensor:
    """A deterministic mixture chooses nothing: log-prob 0 (no gradient)."""
    return torch.zeros(cand_logp.shape[:-1], dtype=cand_logp.dtype, device=cand_logp.device)
