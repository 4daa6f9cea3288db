"""Log-likelihoods of rollout steps, as the trainer scores them (spec §3).

Notation for one step with policy logits ``z`` (the logits that predict the step), temperature
``T``, stored candidates ``c [K]`` and stored ``q [K]``:

    lp_i  = log softmax(z / T)[c_i]                      (candidate log-probs)
    log p'_i = lp_i - logsumexp_j lp_j                   (renormalized over the K ids)

* discrete step with token ``x``:  ``log softmax(z / T)[x]``
* soft step, gumbel, paper estimator (default)::

      l'_i = log(p'_i + 1e-6)
      g'_i = clamp(q_i - l'_i, -1.5, 3)
      phi(g) = -g - exp(-g)                            (Gumbel(0,1) log-density)
      log pi = mean_{i : l'_i > -3} phi(g'_i)          (0 when no candidate passes)

  ``d log pi / d l'_i = (1 - exp(-g'_i)) / |M|`` where the clamp is inactive, 0 where active.
* soft step, gumbel, exact variant: ``sum_i phi(q_i - l'_i)`` over all K, no clamp.
* soft step, dirichlet: mean over ``{p'_i > 0.05}`` of ``clamp(log Gamma(x_i; alpha p'_i, 1), -5, 3)``.
* soft step, gaussian: mean over ``{p'_i > 0.05}`` of ``log N(x_i; p'_i, sigma)``.
* soft step, noise none: 0 (a deterministic mixture has no density).

The rollout computes its per-step log-probs with :func:`step_logprobs` on its own logits, and the
trainer with :func:`mixed_logprobs` on the recomputed logits: the same code, so with unchanged
weights the two agree (replay parity) and the PPO ratio is 1.

Memory: one ``[N, V]`` float32 log-softmax; everything else is ``[N, K]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from soft_thinking.core.noise import LOG_EPS
from soft_thinking.core.sampling import log_softmax_at_temperature


@dataclass(frozen=True)
class LogProbOptions:
    """How soft steps are scored (a subset of :class:`SoftThinkingConfig`)."""

    mode: str = "paper"  # "paper" | "exact"
    gumbel_clamp: tuple[float, float] | None = (-1.5, 3.0)
    logp_floor: float = -3.0
    dirichlet_alpha: float = 1.0
    dirichlet_clamp: tuple[float, float] = (-5.0, 3.0)
    gaussian_sigma: float = 0.05
    p_floor: float = 0.05  # dirichlet/gaussian candidates with p' <= p_floor are not averaged
    degenerate_as_discrete: bool = False

    @classmethod
    def from_config(cls, cfg) -> LogProbOptions:  # cfg: SoftThinkingConfig
        return cls(
            mode=cfg.logprob_mode,
            gumbel_clamp=cfg.gumbel_clamp,
            logp_floor=cfg.logp_floor,
            dirichlet_alpha=cfg.dirichlet_alpha,
            gaussian_sigma=cfg.gaussian_sigma,
            degenerate_as_discrete=cfg.degenerate_as_discrete,
        )


def renormalized_log_probs(cand_logp: Tensor) -> Tensor:
    """``log p'_i = lp_i - logsumexp_j lp_j`` over the K candidate ids."""
    return cand_logp - torch.logsumexp(cand_logp, dim=-1, keepdim=True)


def gumbel_log_density(g: Tensor) -> Tensor:
    """``phi(g) = -g - exp(-g)``, the log-density of Gumbel(0, 1)."""
    return -g - torch.exp(-g)


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    m = mask.to(values.dtype)
    return (values * m).sum(-1) / m.sum(-1).clamp_min(1.0)


# ---------------------------------------------------------------------------------------------
# soft-step densities on candidate log-probs  (cand_logp [N, K], q [N, K]) -> [N]
# ---------------------------------------------------------------------------------------------
def gumbel_step_logprob(cand_logp: Tensor, q: Tensor, opts: LogProbOptions) -> Tensor:
    """Paper estimator: masked mean of ``phi(clamp(q - log(p' + 1e-6)))`` over ``l' > floor``."""
    ell = torch.log(renormalized_log_probs(cand_logp).exp() + LOG_EPS)
    g = q.to(ell.dtype) - ell
    if opts.gumbel_clamp is not None:
        g = g.clamp(opts.gumbel_clamp[0], opts.gumbel_clamp[1])
    return _masked_mean(gumbel_log_density(g), ell > opts.logp_floor)


def gumbel_step_logprob_exact(cand_logp: Tensor, q: Tensor, opts: LogProbOptions) -> Tensor:
    """Exact variant: ``sum_i phi(q_i - log(p'_i + 1e-6))`` over all K, no clamp, no mask."""
    ell = torch.log(renormalized_log_probs(cand_logp).exp() + LOG_EPS)
    return gumbel_log_density(q.to(ell.dtype) - ell).sum(-1)


def dirichlet_step_logprob(cand_logp: Tensor, x: Tensor, opts: LogProbOptions) -> Tensor:
    """Mean over ``p' > 0.05`` of ``clamp((a-1) log x - x - lgamma(a), -5, 3)``, ``a = alpha p'``."""
    p = renormalized_log_probs(cand_logp).exp()
    a = (opts.dirichlet_alpha * p).clamp_min(1e-8)
    xs = x.to(p.dtype).clamp_min(torch.finfo(torch.float32).tiny)
    lp = ((a - 1) * torch.log(xs) - xs - torch.lgamma(a)).clamp(*opts.dirichlet_clamp)
    return _masked_mean(lp, p > opts.p_floor)


def gaussian_step_logprob(cand_logp: Tensor, x: Tensor, opts: LogProbOptions) -> Tensor:
    """Mean over ``p' > 0.05`` of ``-(x - p')^2 / (2 sigma^2) - log sigma - log(2 pi) / 2``."""
    p = renormalized_log_probs(cand_logp).exp()
    s = opts.gaussian_sigma
    lp = -((x.to(p.dtype) - p) ** 2) / (2 * s * s) - math.log(s) - 0.5 * math.log(2 * math.pi)
    return _masked_mean(lp, p > opts.p_floor)


def none_step_logprob(cand_logp: Tensor, q: Tensor, opts: LogProbOptions) -> Tensor:
    """A deterministic mixture chooses nothing: log-prob 0 (no gradient)."""
    return torch.zeros(cand_logp.shape[:-1], dtype=cand_logp.dtype, device=cand_logp.device)


SoftDensity = Callable[[Tensor, Tensor, LogProbOptions], Tensor]
SOFT_DENSITY_REGISTRY: dict[tuple[str, str], SoftDensity] = {
    ("gumbel", "paper"): gumbel_step_logprob,
    ("gumbel", "exact"): gumbel_step_logprob_exact,
    ("dirichlet", "paper"): dirichlet_step_logprob,
    ("dirichlet", "exact"): dirichlet_step_logprob,
    ("gaussian", "paper"): gaussian_step_logprob,
    ("gaussian", "exact"): gaussian_step_logprob,
    ("none", "paper"): none_step_logprob,
    ("none", "exact"): none_step_logprob,
}


def soft_step_logprob(cand_logp: Tensor, q: Tensor, noise: str, opts: LogProbOptions) -> Tensor:
    key = (noise, opts.mode)
    if key not in SOFT_DENSITY_REGISTRY:
        raise ValueError(f"no soft-step density for noise={noise!r}, mode={opts.mode!r}; allowed: {sorted(SOFT_DENSITY_REGISTRY)}")
    return SOFT_DENSITY_REGISTRY[key](cand_logp, q, opts)


# ---------------------------------------------------------------------------------------------
# public entry points
# ---------------------------------------------------------------------------------------------
def step_logprobs(
    logp: Tensor,
    tokens: Tensor,
    ids: Tensor,
    q: Tensor,
    soft: Tensor,
    noise: str,
    opts: LogProbOptions,
    n_kept: Tensor | None = None,
) -> Tensor:
    """Per-position log-probs from a precomputed ``logp = log softmax(z / T)`` of shape ``[..., V]``.

    Discrete positions: ``logp[token]``; soft positions: the noise kind's density (module doc).
    With ``opts.degenerate_as_discrete`` soft steps with one surviving candidate (``n_kept == 1``)
    are scored as the token log-prob of that candidate.
    """
    token_lp = logp.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)
    cand_lp = logp.gather(-1, ids.long())
    soft_lp = soft_step_logprob(cand_lp, q, noise, opts)
    is_soft = soft.bool()
    if opts.degenerate_as_discrete:
        if n_kept is None:
            raise ValueError("degenerate_as_discrete needs n_kept (the surviving-candidate count of each step)")
        is_soft = is_soft & (n_kept > 1)
    return torch.where(is_soft, soft_lp, token_lp)


def mixed_logprobs(
    logits: Tensor,
    tokens: Tensor,
    ids: Tensor,
    q: Tensor,
    soft: Tensor,
    temperature: float | Tensor,
    noise: str,
    opts: LogProbOptions | None = None,
    n_kept: Tensor | None = None,
) -> Tensor:
    """Log-probs of a whole padded batch of rollout steps (discrete and soft mixed).

    Args:
        logits: ``[..., V]`` policy logits predicting each step.
        tokens: ``[...]`` visible tokens; ids/q: ``[..., K]``; soft: ``[...]`` bool.
        temperature: the rollout temperature of each step (float or ``[...]``).
        noise: the batch's noise kind; opts: estimator options (defaults = the paper's).
    Returns:
        ``[...]`` float32 log-probs; padding positions hold finite garbage (mask them).
    """
    opts = opts or LogProbOptions()
    logp = log_softmax_at_temperature(logits, temperature)
    return step_logprobs(logp, tokens, ids, q, soft, noise, opts, n_kept)


def gumbel_logprob(
    logits: Tensor,
    ids: Tensor,
    q: Tensor,
    temperature: float | Tensor = 1.0,
    clamp: tuple[float, float] | None = (-1.5, 3.0),
    logp_floor: float = -3.0,
) -> Tensor:
    """The paper's soft-step estimator for ``logits [N, V]``, ``ids [N, K]``, ``q [N, K]`` -> ``[N]``."""
    cand_lp = log_softmax_at_temperature(logits, temperature).gather(-1, ids.long())
    return gumbel_step_logprob(cand_lp, q, LogProbOptions(gumbel_clamp=clamp, logp_floor=logp_floor))


def gumbel_logprob_exact(logits: Tensor, ids: Tensor, q: Tensor, temperature: float | Tensor = 1.0) -> Tensor:
    """Unclamped Gumbel log-density summed over all K candidates -> ``[N]``."""
    cand_lp = log_softmax_at_temperature(logits, temperature).gather(-1, ids.long())
    return gumbel_step_logprob_exact(cand_lp, q, LogProbOptions(mode="exact"))


def dirichlet_logprob(
    logits: Tensor, ids: Tensor, x: Tensor, temperature: float | Tensor = 1.0, alpha: float = 1.0
) -> Tensor:
    cand_lp = log_softmax_at_temperature(logits, temperature).gather(-1, ids.long())
    return dirichlet_step_logprob(cand_lp, x, LogProbOptions(dirichlet_alpha=alpha))


def gaussian_logprob(
    logits: Tensor, ids: Tensor, x: Tensor, temperature: float | Tensor = 1.0, sigma: float = 0.05
) -> Tensor:
    cand_lp = log_softmax_at_temperature(logits, temperature).gather(-1, ids.long())
    return gaussian_step_logprob(cand_lp, x, LogProbOptions(gaussian_sigma=sigma))
