"""The pure-torch core of SofT-GRPO: every formula once, free of any engine's types.

Modules, in the order a step flows through them:

- ``config``   : :class:`SoftThinkingConfig`, every knob documented once; ``from_flags``.
- ``plan``     : a batch's per-row settings as tensors (:class:`StepPlan`; rows join and leave).
- ``sampling`` : temperature / top-k / top-p / min-p filtering with per-row settings.
- ``rng``      : the counter-based generator ``u = f(seed, position, candidate)``.
- ``noise``    : the one noise registry (none, gumbel, dirichlet, gaussian): draw, weights, density.
- ``density``  : the log-densities of the stored noise values.
- ``step``     : one decoding step (soft or discrete) for a batch (the reference engine's).
- ``batch``    : the same step without host synchronisation (continuous batching, SGLang).
- ``mixture``  : ``sum_i w_i E[c_i]`` without a [B, V] tensor.
- ``phase``    : think-end detection and Cold Stop.
- ``recorder`` : step results in, one :class:`SoftTrace` per row out.
- ``trace``    : the rollout -> trainer contract (:class:`SoftTrace`).
- ``logprob``  : the log-likelihoods the trainer uses (spec §3).
- ``grpo``     : advantages, PPO-clip loss, KL penalties, loss aggregation (verl's signatures).
"""


from soft_thinking.core.config import NOISE_KINDS, ConfigError, SoftThinkingConfig

__all__ = ["NOISE_KINDS", "ConfigError", "SoftThinkingConfig"]
