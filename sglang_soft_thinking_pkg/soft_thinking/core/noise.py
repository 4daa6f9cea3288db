"""Noise on the soft-thinking mixture (spec §1 step 4) and the per-row random draws it uses.

Each noise kind turns the filtered candidate probabilities ``p~ [B, K]`` into the stored value
``q`` (what the trace ships) and maps ``q`` to the mixture weights ``w``:

=========  ==========================================================  ======================
kind       stored ``q``                                                weights ``w``
=========  ==========================================================  ======================
none       ``p~``                                                      ``q / sum q``
gumbel     ``log(p~ + 1e-6) + noise_factor * clamp(g, lo, hi)``,        ``softmax(q / tau_g)``
           ``g = -log(-log U) ~ Gumbel(0, 1)``
dirichlet  ``x ~ Gamma(alpha * p~, 1)`` (0 where ``p~ = 0``)             ``x / sum x``
gaussian   ``x ~ N(p~, sigma^2)`` clipped to ``[max(p~ - c, 0), p~ + c]``  ``x / sum x``
           (0 where ``p~ = 0``)
=========  ==========================================================  ======================

The visible token of the step is the candidate with the largest ``q`` (for gumbel this is the
Gumbel-max trick: ``argmax q ~ p~``) and so the largest weight.

Randomness comes only from the per-row ``torch.Generator`` objects the caller passes: row ``b``
draws from ``generators[b]`` alone, so a sample's draws never depend on the batch it is in.
The trainer never draws: it rebuilds ``w`` from the stored ``q`` with :func:`mixture_weights`,
the same function the rollout used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

LOG_EPS = 1e-6  # the "+1e-6" inside log(p~ + 1e-6)
_TINY = torch.finfo(torch.float32).tiny  # draws are floored here so they survive float32 storage


@dataclass(frozen=True)
class NoiseParams:
    """The noise settings of one batch (a subset of :class:`SoftThinkingConfig`)."""

    tau_g: float = 0.1
    noise_factor: float = 1.0
    gumbel_clamp: tuple[float, float] | None = (-1.5, 3.0)
    dirichlet_alpha: float = 1.0
    gaussian_sigma: float = 0.05
    gaussian_clip: float = 0.15

    @classmethod
    def from_config(cls, cfg) -> NoiseParams:  # cfg: SoftThinkingConfig (duck-typed to avoid a cycle)
        return cls(
            tau_g=cfg.gumbel_softmax_temperature,
            noise_factor=cfg.noise_factor,
            gumbel_clamp=cfg.gumbel_clamp,
            dirichlet_alpha=cfg.dirichlet_alpha,
            gaussian_sigma=cfg.gaussian_sigma,
            gaussian_clip=cfg.gaussian_clip,
        )


# ---------------------------------------------------------------------------------------------
# per-row random draws
# ---------------------------------------------------------------------------------------------
def row_uniform(generators: Sequence[torch.Generator], n: int, device: torch.device) -> Tensor:
    """``U [B, n]`` in ``[0, 1)``, row ``b`` drawn from ``generators[b]`` (float64)."""
    if not generators:
        return torch.empty(0, n, dtype=torch.float64, device=device)
    return torch.stack([torch.rand(n, generator=g, device=device, dtype=torch.float64) for g in generators])


def row_normal(generators: Sequence[torch.Generator], n: int, device: torch.device) -> Tensor:
    """``N(0, 1) [B, n]``, row ``b`` drawn from ``generators[b]`` (float64)."""
    if not generators:
        return torch.empty(0, n, dtype=torch.float64, device=device)
    return torch.stack([torch.randn(n, generator=g, device=device, dtype=torch.float64) for g in generators])


def gumbel_from_uniform(u: Tensor) -> Tensor:
    """``g = -log(-log U)`` with ``U`` kept inside ``(0, 1)``: ``g ~ Gumbel(0, 1)``."""
    eps = torch.finfo(u.dtype).eps
    u = u.clamp(eps, 1.0 - eps)
    return -torch.log(-torch.log(u))


def sample_gamma(concentration: Tensor, generators: Sequence[torch.Generator], proposals: int = 8) -> Tensor:
    """``x ~ Gamma(a, 1)`` per entry of ``concentration [B, K]`` with per-row generators (float64).

    Marsaglia-Tsang: for ``a >= 1`` with ``d = a - 1/3``, ``c = 1/sqrt(9d)``, propose
    ``v = (1 + c n)^3`` (``n ~ N(0,1)``) and accept when ``log U < n^2/2 + d - d v + d log v``;
    ``x = d v``. For ``a < 1`` use ``Gamma(a) = Gamma(a + 1) * U^(1/a)``. Each round draws
    ``proposals`` candidates per entry; only rows that still have a pending entry draw again, so
    a row's draws depend on that row alone. Entries with ``a == 0`` are 0.
    """
    b, k = concentration.shape
    device = concentration.device
    a = concentration.to(torch.float64)
    boost = a < 1
    a1 = torch.where(boost, a + 1, a)
    d = a1 - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.zeros_like(a)
    pending = torch.ones_like(a, dtype=torch.bool)
    rows = torch.arange(b, device=device)
    while bool(pending.any()):
        active = rows[pending.any(-1)]
        gens = [generators[int(r)] for r in active]
        n = row_normal(gens, proposals * k, device).view(-1, proposals, k)
        u = row_uniform(gens, proposals * k, device).view(-1, proposals, k)
        dd, cc = d[active].unsqueeze(1), c[active].unsqueeze(1)
        v = (1 + cc * n) ** 3
        ok = (v > 0) & (torch.log(u.clamp_min(1e-300)) < 0.5 * n**2 + dd - dd * v + dd * torch.log(v.clamp_min(1e-300)))
        first = ok.to(torch.int8).argmax(1, keepdim=True)  # first accepted proposal
        value = (dd * v).gather(1, first).squeeze(1)
        got = ok.any(1) & pending[active]
        out[active] = torch.where(got, value, out[active])
        pending[active] &= ~got
    u_boost = row_uniform(generators, k, device)
    out = torch.where(boost, out * u_boost.clamp_min(1e-300) ** (1.0 / a.clamp_min(1e-300)), out)
    return torch.where(a > 0, out, torch.zeros_like(out))


# ---------------------------------------------------------------------------------------------
# the noise kinds: draw q, map q -> weights
# ---------------------------------------------------------------------------------------------
def draw_none(p_tilde: Tensor, generators: Sequence[torch.Generator], params: NoiseParams) -> Tensor:
    """Plain Soft Thinking: ``q = p~`` (no randomness)."""
    return p_tilde.to(torch.float32)


def draw_gumbel(p_tilde: Tensor, generators: Sequence[torch.Generator], params: NoiseParams) -> Tensor:
    """``q = log(p~ + 1e-6) + noise_factor * clamp(g, lo, hi)``, ``g ~ Gumbel(0, 1)``."""
    g = gumbel_from_uniform(row_uniform(generators, p_tilde.shape[-1], p_tilde.device))
    if params.gumbel_clamp is not None:
        g = g.clamp(params.gumbel_clamp[0], params.gumbel_clamp[1])
    return (torch.log(p_tilde.to(torch.float64) + LOG_EPS) + params.noise_factor * g).to(torch.float32)


def draw_dirichlet(p_tilde: Tensor, generators: Sequence[torch.Generator], params: NoiseParams) -> Tensor:
    """``x_i ~ Gamma(alpha * p~_i, 1)``; ``x / sum x`` is a Dirichlet(alpha p~) draw."""
    x = sample_gamma(params.dirichlet_alpha * p_tilde.to(torch.float64), generators)
    return torch.where(p_tilde > 0, x.clamp_min(_TINY), torch.zeros_like(x)).to(torch.float32)


def draw_gaussian(p_tilde: Tensor, generators: Sequence[torch.Generator], params: NoiseParams) -> Tensor:
    """``x_i = clip(p~_i + sigma n_i, max(p~_i - c, 0), p~_i + c)``, 0 where ``p~_i = 0``."""
    p = p_tilde.to(torch.float64)
    x = p + params.gaussian_sigma * row_normal(generators, p.shape[-1], p.device)
    x = torch.minimum(torch.maximum(x, (p - params.gaussian_clip).clamp_min(0.0)), p + params.gaussian_clip)
    return torch.where(p > 0, x.clamp_min(_TINY), torch.zeros_like(x)).to(torch.float32)


def _normalize(q: Tensor, tau_g: float | Tensor) -> Tensor:
    return q / q.sum(-1, keepdim=True)


def _softmax_tau(q: Tensor, tau_g: float | Tensor) -> Tensor:
    tau = torch.as_tensor(tau_g, dtype=q.dtype, device=q.device)
    if tau.dim() > 0:
        tau = tau.unsqueeze(-1)
    return torch.softmax(q / tau, dim=-1)


@dataclass(frozen=True)
class NoiseKind:
    name: str
    draw: Callable[[Tensor, Sequence[torch.Generator], NoiseParams], Tensor]
    weights: Callable[[Tensor, float | Tensor], Tensor]
    stochastic: bool


NOISE_REGISTRY: dict[str, NoiseKind] = {}


def register_noise(kind: NoiseKind) -> NoiseKind:
    NOISE_REGISTRY[kind.name] = kind
    return kind


register_noise(NoiseKind("none", draw_none, _normalize, stochastic=False))
register_noise(NoiseKind("gumbel", draw_gumbel, _softmax_tau, stochastic=True))
register_noise(NoiseKind("dirichlet", draw_dirichlet, _normalize, stochastic=True))
register_noise(NoiseKind("gaussian", draw_gaussian, _normalize, stochastic=True))


def get_noise(name: str) -> NoiseKind:
    if name not in NOISE_REGISTRY:
        raise ValueError(f"unknown noise kind {name!r}; allowed: {sorted(NOISE_REGISTRY)}")
    return NOISE_REGISTRY[name]


def mixture_weights(q: Tensor, noise: str, tau_g: float | Tensor) -> Tensor:
    """The mixture weights of stored ``q`` (float32): the one function rollout and replay share."""
    return get_noise(noise).weights(q.to(torch.float32), tau_g)
