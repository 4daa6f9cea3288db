"""Filtering and candidate selection against an independent float64 reference (spec §1 steps 1-3)."""

import numpy as np
import pytest
import torch

from soft_thinking.core.sampling import (
    SamplingTensors,
    filtered_candidates,
    filtered_sorted,
    sample_from_sorted,
    scaled_log_probs,
)


def reference_filter(z: np.ndarray, temperature: float, top_k: int, top_p: float, min_p: float) -> np.ndarray:
    """float64, one row, the spec's order: softmax(z/T), top-k, renorm, top-p, renorm, min-p, renorm."""
    t = temperature if temperature > 0 else 1.0
    p = np.exp((z - z.max()) / t)
    p /= p.sum()
    order = np.argsort(-p, kind="stable")
    keep = np.zeros_like(p, dtype=bool)
    kk = len(p) if top_k < 0 else min(top_k, len(p))
    keep[order[:kk]] = True
    q = np.where(keep, p, 0.0)
    q /= q.sum()
    if top_p < 1.0:
        sorted_q = q[order]
        csum = np.cumsum(sorted_q) - sorted_q  # exclusive
        drop = csum >= top_p
        drop[0] = False
        q[order[drop]] = 0.0
        q /= q.sum()
    if min_p > 0:
        q = np.where(q >= min_p * q.max(), q, 0.0)
        q /= q.sum()
    return q


def random_settings(rng: np.random.Generator, b: int, v: int):
    temps = rng.choice([0.5, 1.0, 1.3], size=b)
    ks = rng.choice([-1, 1, 3, 7, v + 5], size=b)
    ps = rng.choice([1.0, 0.95, 0.7, 0.3], size=b)
    mps = rng.choice([0.0, 0.05, 0.3], size=b)
    return temps, ks, ps, mps


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_topk", [1, 3, 8])
def test_candidates_match_float64_reference(seed: int, max_topk: int) -> None:
    rng = np.random.default_rng(seed)
    b, v = 7, 40
    z = rng.normal(size=(b, v)) * rng.choice([0.5, 2.0, 6.0])
    temps, ks, ps, mps = random_settings(rng, b, v)
    st = SamplingTensors.build(b, "cpu", temps.tolist(), ks.tolist(), ps.tolist(), mps.tolist())
    probs = scaled_log_probs(torch.tensor(z, dtype=torch.float32), st.temperature).exp()
    ids, p_tilde, n_kept = filtered_candidates(probs, max_topk, st)
    for r in range(b):
        ref = reference_filter(z[r], temps[r], int(ks[r]), ps[r], mps[r])
        top = np.argsort(-ref, kind="stable")[:max_topk]
        ref_c = ref[top] / ref[top].sum()
        got = p_tilde[r].double().numpy()
        np.testing.assert_allclose(got, ref_c, atol=1e-6)
        assert set(ids[r][got > 0].tolist()) == set(top[ref_c > 0].tolist())
        assert int(n_kept[r]) == int((ref_c > 0).sum())


def test_all_filtered_but_one_and_ties() -> None:
    z = torch.tensor([[5.0, 5.0, 1.0, 0.0], [9.0, 0.0, 0.0, 0.0]])
    st = SamplingTensors.build(2, "cpu", 1.0, -1, 0.4, 0.0)
    ids, p, n = filtered_candidates(torch.softmax(z, -1), 3, st)
    # row 0: a tie at the top (p = 0.49 each); top_p 0.4 keeps exactly one of the two tied entries
    assert n.tolist() == [1, 1]
    assert ids[0, 0].item() in (0, 1) and p[0, 0].item() == 1.0
    assert p[1].tolist() == [1.0, 0.0, 0.0]


def test_top_p_one_keeps_everything() -> None:
    z = torch.randn(3, 30, generator=torch.Generator().manual_seed(0))
    st = SamplingTensors.build(3, "cpu", 1.0, -1, 1.0, 0.0)
    probs = torch.softmax(z, -1)
    ids, p, n = filtered_candidates(probs, 30, st)
    assert n.tolist() == [30, 30, 30]
    torch.testing.assert_close(p, probs.gather(-1, ids) / probs.gather(-1, ids).sum(-1, keepdim=True))


@pytest.mark.parametrize("seed", range(4))
def test_filtered_sorted_matches_reference_including_partial_sort_fallback(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    b, v = 5, 3000  # larger than the partial sort, with flat rows whose nucleus exceeds it
    z = rng.normal(size=(b, v)) * np.array([[0.01], [0.1], [1.0], [3.0], [8.0]])
    temps, ks, ps, mps = random_settings(rng, b, v)
    st = SamplingTensors.build(b, "cpu", temps.tolist(), ks.tolist(), ps.tolist(), mps.tolist())
    probs = scaled_log_probs(torch.tensor(z, dtype=torch.float32), st.temperature).exp()
    ids, p = filtered_sorted(probs, st)
    for r in range(b):
        ref = reference_filter(z[r], temps[r], int(ks[r]), ps[r], mps[r])
        dense = np.zeros(v)
        dense[ids[r].numpy()] = p[r].double().numpy()
        np.testing.assert_allclose(dense, ref, atol=2e-6)


def test_discrete_sampling_distribution_chi_square() -> None:
    from scipy.stats import chisquare

    z = torch.tensor([[2.0, 1.5, 1.0, 0.2, -1.0, -3.0]])
    st = SamplingTensors.build(1, "cpu", 1.0, 4, 0.9, 0.0)
    ids, p = filtered_sorted(torch.softmax(z, -1), st)
    n = 20000
    u = torch.rand(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    draws = sample_from_sorted(ids.expand(n, -1), p.expand(n, -1), u)
    expected = np.zeros(6)
    expected[ids[0].numpy()] = p[0].double().numpy()
    support = expected > 0
    counts = np.bincount(draws.numpy(), minlength=6)
    assert counts[~support].sum() == 0
    f_exp = expected[support] / expected[support].sum() * n
    assert chisquare(counts[support], f_exp).pvalue > 1e-3


def test_greedy_rows_use_unit_temperature_for_the_distribution() -> None:
    z = torch.tensor([[1.0, 2.0, 3.0]])
    lp = scaled_log_probs(z, torch.tensor([0.0]))
    torch.testing.assert_close(lp, torch.log_softmax(z, -1))
