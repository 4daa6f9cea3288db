"""Pass@k estimators and bootstrap confidence intervals (spec §6).

- ``mean@n`` = average accuracy over the n samples of a problem = unbiased Pass@1.
- Unbiased Pass@k: ``1 - C(n-c, k) / C(n, k)``, computed in the stable product form
  ``1 - prod_{i=n-c+1}^{n} (1 - k / i)`` (no huge binomials).
- "First-k" Pass@k (the original's estimator): 1 if any of the first k samples is correct.
  Higher variance; reported separately and labelled as such.
- Bootstrap CI: resample problems with replacement ``B`` times (seeded), take the
  (alpha/2, 1-alpha/2) percentiles of the mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

K_VALUES = (1, 2, 4, 8, 16, 32)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased Pass@k for one problem with ``c`` correct out of ``n`` samples.

    ``1 - C(n-c, k) / C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k/i)``; exactly 1 when ``n - c < k``.
    """
    for name, v in (("n", n), ("c", c), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"pass_at_k: {name}={v!r} must be an integer")
    if n < 1:
        raise ValueError(f"pass_at_k: n={n} is invalid: allowed n >= 1")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: c={c} is invalid: allowed 0 <= c <= n ({n})")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: k={k} is invalid: allowed 1 <= k <= n ({n})")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def pass_at_k_first(correct: Sequence[bool], k: int) -> float:
    """The original's Pass@k: 1.0 if any of the first ``k`` samples (by sample index) is correct."""
    if not 1 <= k <= len(correct):
        raise ValueError(f"pass_at_k_first: k={k} is invalid: allowed 1 <= k <= {len(correct)}")
    return float(any(correct[:k]))


def k_values(n: int, ks: Sequence[int] = K_VALUES) -> list[int]:
    """The k of ``ks`` that are <= n (always including 1)."""
    return [k for k in ks if k <= n]


def bootstrap_ci(
    values: Sequence[float], *, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-problem ``values`` (resampling problems)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError("bootstrap_ci: values must be a non-empty 1-D sequence")
    if not 0 < alpha < 1:
        raise ValueError(f"bootstrap_ci: alpha={alpha} is invalid: allowed 0 < alpha < 1")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, arr.size, size=(n_boot, arr.size))
    means = arr[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)
