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

from dataclasses import dataclass

import torch
from torch import Tensor

from soft_thinking.core.density import (  # noqa: F401 - the densities are re-exported here
    LOG_EPS,
    dirichlet_step_logprob,
    gaussian_step_logprob,
    gumbel_log_density,
    gumbel_step_logprob,
    gumbel_step_logprob_exact,
    none_step_logprob,
    renormalized_log_probs,
)
from soft_thinking.core.noise import get_noise
from soft_thinking.core.sampling import log_softmax_at_temperature


@dataclass(frozen=True)
class LogProbOptions:
    """How soft steps are scored: a view of :class:`SoftThinkingConfig` (``cfg.logprob_options()``).

    The config fields have no defaults here; ``dirichlet_clamp`` and ``p_floor`` are constants
    of the ablation estimators (spec §3).
    """

    mode: str  # SoftThinkingConfig.logprob_mode: "paper" | "exact"
    gumbel_clamp: tuple[float, float] | None
    logp_floor: float
    dirichlet_alpha: float
    gaussian_sigma: float
    degenerate_as_discrete: bool
    dirichlet_clamp: tuple[float, float] = (-5.0, 3.0)
    p_floor: float = 0.05  # dirichlet/gaussian candidates with p' <= p_floor are not averaged


def soft_step_logprob(
    cand_logp: Tensor, q: Tensor, noise: str, opts: LogProbOptions, valid: Tensor | None = None
) -> Tensor:
    """The noise kind's log-density (the registry in :mod:`soft_thinking.core.noise`) for ``opts.mode``."""
    return get_noise(noise).density(opts.mode)(cand_logp, q, opts, valid)


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
    opts: LogProbOptions,
    n_kept: Tensor | None = None,
) -> Tensor:
    """Log-probs of a whole padded batch of rollout steps (discrete and soft mixed).

    Args:
        logits: ``[..., V]`` policy logits predicting each step.
        tokens: ``[...]`` visible tokens; ids/q: ``[..., K]``; soft: ``[...]`` bool.
        temperature: the rollout temperature of each step (float or ``[...]``).
        noise: the batch's noise kind; opts: estimator options (``cfg.logprob_options()``).
    Returns:
        ``[...]`` float32 log-probs; padding positions hold finite garbage (mask them).
    """
    logp = log_softmax_at_temperature(logits, temperature)
    return step_logprobs(logp, tokens, ids, q, soft, noise, opts, n_kept)
