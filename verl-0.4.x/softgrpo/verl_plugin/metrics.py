"""Replay parity in log space (spec §3 "Invariant"), split by step kind.

verl's own ``training/rollout_probs_diff_*`` compare *probabilities*; a soft step's "log-prob" is a
density and can be far from [0, 1], so SofT-GRPO reports, over the response tokens of a batch::

    softgrpo/replay_max_abs_dlogp_soft      = max |log pi_trainer - log pi_rollout| over soft steps
    softgrpo/replay_max_abs_dlogp_discrete  = the same over discrete steps
    softgrpo/soft_step_share                = soft steps / response steps
    softgrpo/soft_steps, softgrpo/discrete_steps  (counts; a max over no step is reported as 0)
"""

from __future__ import annotations

import torch
from torch import Tensor


def _rows(t: Tensor) -> list[Tensor]:
    return list(t.unbind()) if t.is_nested or t.dim() > 1 else [t]


def replay_parity_metrics(old_log_probs: Tensor, rollout_log_probs: Tensor, response_mask: Tensor,
                          soft_on: Tensor | None) -> dict[str, float]:
    """The metrics above. ``old_log_probs``/``rollout_log_probs``/``response_mask``: ``[B, R_b]``
    (jagged or padded); ``soft_on``: ``[B, P_b + R_b]`` (None: every step is discrete)."""
    soft_max, disc_max, n_soft, n_disc = 0.0, 0.0, 0, 0
    ons = _rows(soft_on) if soft_on is not None else None
    for i, (old, roll, mask) in enumerate(zip(_rows(old_log_probs), _rows(rollout_log_probs), _rows(response_mask))):
        r = int(mask.shape[0])
        m = mask.bool()
        on = ons[i][-r:].bool() if ons is not None else torch.zeros(r, dtype=torch.bool)
        if on.shape[0] != r:
            raise ValueError(f"soft_on row {i} has {on.shape[0]} response entries, the response {r}")
        gap = (old.float() - roll.float()).abs()
        soft, disc = m & on, m & ~on
        if soft.any():
            soft_max = max(soft_max, gap[soft].max().item())
        if disc.any():
            disc_max = max(disc_max, gap[disc].max().item())
        n_soft += int(soft.sum())
        n_disc += int(disc.sum())
    return {
        "softgrpo/replay_max_abs_dlogp_soft": soft_max,
        "softgrpo/replay_max_abs_dlogp_discrete": disc_max,
        "softgrpo/soft_step_share": n_soft / max(n_soft + n_disc, 1),
        "softgrpo/soft_steps": float(n_soft),
        "softgrpo/discrete_steps": float(n_disc),
    }
