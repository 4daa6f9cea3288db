"""The pure-torch core of SofT-GRPO: every formula once, free of any engine's types.

Modules, in the order a step flows through them:

- ``config``   : :class:`SoftThinkingConfig` and its validation.
- ``sampling`` : temperature / top-k / top-p / min-p filtering with per-row settings.
- ``noise``    : the noise registry (none, gumbel, dirichlet, gaussian) and per-row RNG draws.
- ``step``     : one decoding step (soft or discrete) for a batch.
- ``mixture``  : ``sum_i w_i E[c_i]`` without a [B, V] tensor.
- ``phase``    : think-end detection and Cold Stop.
- ``logprob``  : the log-likelihoods the trainer uses (spec §3).
- ``grpo``     : advantages, PPO-clip loss, KL penalties, loss aggregation.
- ``trace``    : the rollout -> trainer contract (:class:`SoftTrace`).
"""

from soft_thinking.core.config import NOISE_KINDS, ConfigError, SoftThinkingConfig

__all__ = ["NOISE_KINDS", "ConfigError", "SoftThinkingConfig"]
