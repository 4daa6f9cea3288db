"""Noise draws: distributions (KS / chi-square), per-row generators, weights."""

import numpy as np
import pytest
import torch
from scipy import stats

from soft_thinking.core.noise import (
    LOG_EPS,
    NoiseParams,
    draw_dirichlet,
    draw_gaussian,
    draw_gumbel,
    get_noise,
    mixture_weights,
    sample_gamma,
)


def gens(n: int, seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed * 1000 + i) for i in range(n)]


def test_unclamped_gumbel_draws_pass_ks_test() -> None:
    p = torch.full((400, 5), 0.2)
    q = draw_gumbel(p, gens(400), NoiseParams(gumbel_clamp=None))
    g = (q.double() - np.log(0.2 + LOG_EPS)).flatten().numpy()
    assert stats.kstest(g, stats.gumbel_r.cdf).pvalue > 1e-3
    # and a wrong reference (a shifted Gumbel) is rejected: the test has power
    assert stats.kstest(g, lambda x: stats.gumbel_r.cdf(x, loc=0.2)).pvalue < 1e-3


def test_clamp_and_noise_factor() -> None:
    p = torch.full((200, 5), 0.2)
    q = draw_gumbel(p, gens(200), NoiseParams(gumbel_clamp=(-1.5, 3.0), noise_factor=2.0))
    g = (q.double() - np.log(0.2 + LOG_EPS)) / 2.0
    assert g.min() >= -1.5 - 1e-5 and g.max() <= 3.0 + 1e-5
    assert (g.isclose(torch.tensor(-1.5, dtype=torch.float64), atol=1e-5)).any()


def test_argmax_q_is_distributed_as_p_tilde() -> None:
    p_tilde = torch.tensor([0.5, 0.25, 0.15, 0.1, 0.0])
    n = 8000
    q = draw_gumbel(p_tilde.expand(n, -1), gens(n, 1), NoiseParams(gumbel_clamp=None))
    counts = np.bincount(q.argmax(-1).numpy(), minlength=5)
    assert counts[4] == 0  # a filtered-out candidate is never chosen
    assert stats.chisquare(counts[:4], p_tilde[:4].numpy() * n).pvalue > 1e-3


def test_rows_draw_only_from_their_own_generator() -> None:
    p = torch.softmax(torch.randn(6, 5, generator=torch.Generator().manual_seed(3)), -1)
    for draw in (draw_gumbel, draw_dirichlet, draw_gaussian):
        full = draw(p, gens(6), NoiseParams())
        alone = draw(p[2:3], gens(6)[2:3], NoiseParams())
        assert torch.equal(full[2:3], alone), draw.__name__


@pytest.mark.parametrize("a", [0.3, 1.0, 4.5])
def test_gamma_sampler_ks(a: float) -> None:
    conc = torch.full((500, 4), a, dtype=torch.float64)
    x = sample_gamma(conc, gens(500, 2)).flatten().numpy()
    assert stats.kstest(x, stats.gamma(a).cdf).pvalue > 1e-3


def test_dirichlet_and_gaussian_zero_for_filtered_candidates_and_weights_normalized() -> None:
    p = torch.tensor([[0.7, 0.3, 0.0]]).expand(50, -1)
    for name in ("dirichlet", "gaussian"):
        x = get_noise(name).draw(p, gens(50), NoiseParams())
        assert (x[:, 2] == 0).all() and (x[:, :2] > 0).all()
        w = mixture_weights(x, name, 0.1)
        torch.testing.assert_close(w.sum(-1), torch.ones(50))
    x = draw_gaussian(p, gens(50), NoiseParams(gaussian_sigma=1.0, gaussian_clip=0.15))
    assert (x[:, 0] >= 0.55 - 1e-6).all() and (x[:, 0] <= 0.85 + 1e-6).all()


def test_gumbel_weights_are_softmax_over_tau() -> None:
    q = torch.tensor([[0.0, -1.0, -2.0]])
    w = mixture_weights(q, "gumbel", 0.5)
    torch.testing.assert_close(w, torch.softmax(q / 0.5, -1))
    with pytest.raises(ValueError, match="allowed"):
        get_noise("levy")
