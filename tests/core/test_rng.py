"""The counter-based generator: Philox4x32-10 known answers, a pure-Python reference, range, invariance, statistics."""

import numpy as np
import pytest
import torch
from scipy import stats

from soft_thinking.core.rng import (
    STREAM_GUMBEL,
    counter_normal,
    counter_uniform,
    counter_uniforms,
    philox4x32,
    uniform_from_word,
)
from soft_thinking.text import derive_seed

# Random123's kat_vectors for philox4x32_10: (counter, key, output)
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def philox_reference(ctr: tuple[int, ...], key: tuple[int, ...]) -> tuple[int, ...]:
    """Philox4x32-10 on Python integers, written from the paper's round function."""
    m = 0xFFFFFFFF
    c, k = list(ctr), list(key)
    for r in range(10):
        if r:
            k = [(k[0] + 0x9E3779B9) & m, (k[1] + 0xBB67AE85) & m]
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k[0], p1 & m, (p0 >> 32) ^ c[3] ^ k[1], p0 & m]
    return tuple(c)


@pytest.mark.parametrize("ctr,key,out", KAT)
def test_known_answers(ctr, key, out) -> None:
    got = philox4x32(tuple(torch.tensor(x) for x in ctr), tuple(torch.tensor(x) for x in key))
    assert tuple(int(w) for w in got) == out
    assert philox_reference(ctr, key) == out


def test_matches_python_reference_on_random_words() -> None:
    rs = np.random.default_rng(0)
    ctr = rs.integers(0, 2**32, size=(4, 256), dtype=np.int64)
    key = rs.integers(0, 2**32, size=(2, 256), dtype=np.int64)
    got = philox4x32(tuple(torch.from_numpy(c) for c in ctr), tuple(torch.from_numpy(k) for k in key))
    got = np.stack([w.numpy() for w in got])
    for i in range(256):
        assert tuple(got[:, i]) == philox_reference(tuple(int(x) for x in ctr[:, i]), tuple(int(x) for x in key[:, i]))


def test_uniform_range_is_open_and_exact() -> None:
    words = torch.tensor([0, (1 << 9) - 1, 0xFFFFFFFF, 0xFFFFFE00])
    u = uniform_from_word(words)
    assert u.dtype == torch.float32
    assert u[0].item() == u[1].item() == 2.0**-24
    assert u[2].item() == u[3].item() == 1 - 2.0**-24 < 1.0
    seeds = torch.tensor([derive_seed("softgrpo", 0, i, j) for i in range(8) for j in range(8)])
    draws = counter_uniforms(seeds, torch.arange(64) * 37, 30, range(8))
    assert (draws > 0).all() and (draws < 1).all() and torch.isfinite(torch.log(-torch.log(draws))).all()


def test_deterministic_and_batch_invariant() -> None:
    seeds = torch.tensor([derive_seed("softgrpo", 0, p, 0) for p in range(64)])
    pos = torch.randint(0, 10_000, (64,), generator=torch.Generator().manual_seed(0))
    full = counter_uniforms(seeds, pos, 30, (0, 1, 2, 3, 9))
    assert torch.equal(full, counter_uniforms(seeds, pos, 30, (0, 1, 2, 3, 9)))
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(counter_uniforms(seeds[perm], pos[perm], 30, (0, 1, 2, 3, 9)), full[perm])
    alone = counter_uniforms(seeds[5:6], pos[5:6], 5, (2,))
    assert torch.equal(alone[0, :, 0], full[5, :5, 2])  # fewer candidates / streams: same values
    assert torch.equal(counter_uniform(seeds[5], pos[5], torch.arange(30), 9), full[5, :, 4])


def test_keys_decorrelate() -> None:
    """Neighbouring seeds, positions, candidates and streams give unrelated draws (no shared values)."""
    base = counter_uniform(torch.tensor(7), torch.arange(4096), 0, STREAM_GUMBEL)
    for other in (
        counter_uniform(torch.tensor(8), torch.arange(4096), 0, STREAM_GUMBEL),
        counter_uniform(torch.tensor(7), torch.arange(1, 4097), 0, STREAM_GUMBEL),
        counter_uniform(torch.tensor(7), torch.arange(4096), 1, STREAM_GUMBEL),
        counter_uniform(torch.tensor(7), torch.arange(4096), 0, 1),
        counter_uniform(torch.tensor(7 + (1 << 32)), torch.arange(4096), 0, STREAM_GUMBEL),
    ):
        assert abs(np.corrcoef(base.numpy(), other.numpy())[0, 1]) < 0.06
        assert (base == other).float().mean() < 0.01


def test_uniforms_and_gumbel_ks_with_negative_control() -> None:
    seeds = torch.tensor([derive_seed("ks", i) for i in range(200)])
    u = counter_uniforms(seeds, torch.arange(200) + 100, 50, (0,)).flatten().double().numpy()
    assert stats.kstest(u, stats.uniform.cdf).pvalue > 1e-3
    assert stats.kstest(u**1.05, stats.uniform.cdf).pvalue < 1e-3  # negative control: the test has power
    g = -np.log(-np.log(u))
    assert stats.kstest(g, stats.gumbel_r.cdf).pvalue > 1e-3
    assert stats.kstest(g, stats.gumbel_r(loc=0.05).cdf).pvalue < 1e-3
    # consecutive positions of one request: lag-1 serial correlation of a long stream is ~0
    s = counter_uniform(torch.tensor(derive_seed("serial")), torch.arange(100_000), 0).double().numpy()
    assert abs(np.corrcoef(s[:-1], s[1:])[0, 1]) < 0.015
    # 2-D chi-square of (u_t, u_t+1) pairs on a 10x10 grid
    h, _, _ = np.histogram2d(s[:-1:2], s[1::2], bins=10, range=[[0, 1], [0, 1]])
    assert stats.chisquare(h.flatten()).pvalue > 1e-3


def test_box_muller_normals() -> None:
    n = counter_normal(torch.tensor(3), torch.arange(20_000), 0).numpy()
    assert n.dtype == np.float64
    assert stats.kstest(n, stats.norm.cdf).pvalue > 1e-3
    assert stats.kstest(n, stats.norm(scale=1.1).cdf).pvalue < 1e-3


def test_bad_stream_is_refused() -> None:
    with pytest.raises(ValueError, match="stream"):
        counter_uniform(torch.tensor(1), torch.tensor(2), 0, -1)
    with pytest.raises(ValueError, match="streams"):
        counter_uniforms(torch.tensor([1]), torch.tensor([2]), 3, (0, 1.5))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_draws_equal_cpu_bits() -> None:
    seeds = torch.tensor([derive_seed("dev", i) for i in range(64)])
    pos = torch.arange(64) * 1000 + 17
    cpu = counter_uniforms(seeds, pos, 30, range(12))
    gpu = counter_uniforms(seeds.cuda(), pos.cuda(), 30, range(12)).cpu()
    assert torch.equal(cpu, gpu)


def test_block_words_layout_equals_single_blocks() -> None:
    """One stacked evaluation of several (non-adjacent) blocks == each block's four words alone."""
    from soft_thinking.core.rng import (
        block_words,
        counter_words,
        device_index,
        select_columns,
        stream_columns,
    )

    seeds = torch.tensor([derive_seed("blocks", i) for i in range(8)] + [(1 << 62) + 5])
    pos = torch.tensor([0, 1, 17, 2**31, 2**32 - 1, 5, 6, 7, 123456])
    blocks = [0, 2, 5]
    words = block_words(seeds, pos, 6, blocks)
    assert words.shape == (9, 6, 12)
    for i, blk in enumerate(blocks):
        ref = counter_words(seeds[:, None], pos[:, None], torch.arange(6), blk)
        for w in range(4):
            assert torch.equal(words[..., 4 * i + w], ref[w]), (blk, w)
    cols = stream_columns([20, 8, 1, 23], blocks)
    assert cols == [8, 4, 1, 11]
    assert torch.equal(select_columns(words, cols), words[..., cols])
    assert device_index([3, 4, 5, 9, 1, 2], torch.device("cpu")).tolist() == [3, 4, 5, 9, 1, 2]
