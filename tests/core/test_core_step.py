"""Soft/discrete steps, phase control (think-end, Cold Stop, after-thinking, compat) and the mixture."""

import torch

from soft_thinking.core.mixture import mix_embeddings
from soft_thinking.core.noise import NoiseParams, mixture_weights
from soft_thinking.core.phase import PhaseTracker
from soft_thinking.core.sampling import SamplingTensors
from soft_thinking.core.step import decode_step, discrete_step, soft_step

V, K = 40, 5


def gens(n: int, seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed * 100 + i) for i in range(n)]


def settings(b: int, t: float = 1.0, k: int = 5, p: float = 0.95, mp: float = 0.0) -> SamplingTensors:
    return SamplingTensors.build(b, "cpu", t, k, p, mp)


def test_mix_embeddings_one_hot_and_k1_are_exact() -> None:
    e = torch.randn(V, 8, generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([[3, 9, 1], [7, 7, 2]])
    w = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    out = mix_embeddings(e, ids, w)
    assert torch.equal(out[0], e[3]) and torch.equal(out[1], e[7])
    assert torch.equal(mix_embeddings(e, ids[:, :1], torch.ones(2, 1)), e[ids[:, 0]])
    for dtype in (torch.bfloat16, torch.float16):
        eh = e.to(dtype)
        assert torch.equal(mix_embeddings(eh, ids, w), eh[[3, 7]])


def test_mix_embeddings_matches_dense_float64_and_renormalizes() -> None:
    g = torch.Generator().manual_seed(1)
    e = torch.randn(V, 8, generator=g, dtype=torch.float64)
    ids = torch.randint(0, V, (4, K), generator=g)
    w = torch.rand(4, K, generator=g, dtype=torch.float64)
    dense = torch.zeros(4, V, dtype=torch.float64).scatter_add_(1, ids, w / w.sum(-1, keepdim=True))
    torch.testing.assert_close(mix_embeddings(e, ids, w * 3.0), dense @ e)


def test_soft_step_contract() -> None:
    logits = torch.randn(6, V, generator=torch.Generator().manual_seed(2)) * 3
    r = soft_step(logits, settings(6), gens(6), "gumbel", NoiseParams(), K)
    assert r.soft.all()
    assert torch.equal(r.tokens, r.ids[:, 0])
    assert (r.q[:, :-1] >= r.q[:, 1:]).all()  # sorted by q (= weight), descending
    torch.testing.assert_close(r.weights, mixture_weights(r.q, "gumbel", 0.1))
    probs = torch.softmax(logits, -1)
    torch.testing.assert_close(r.entropy, -(probs * probs.log()).sum(-1))


def test_k1_soft_equals_greedy_discrete() -> None:
    logits = torch.randn(5, V, generator=torch.Generator().manual_seed(3))
    r = soft_step(logits, settings(5, k=-1, p=1.0), gens(5), "gumbel", NoiseParams(), 1)
    assert torch.equal(r.tokens, logits.argmax(-1)) and (r.weights == 1).all()
    d = discrete_step(logits, settings(5, t=0.0), gens(5), K)
    assert torch.equal(d.tokens, logits.argmax(-1)) and not d.soft.any()
    assert torch.equal(d.ids[:, 1:], torch.zeros_like(d.ids[:, 1:])) and (d.q == 0).all()


def test_greedy_soft_is_noise_free_mixture() -> None:
    logits = torch.randn(3, V, generator=torch.Generator().manual_seed(4))
    r = soft_step(logits, settings(3, t=0.0, k=5, p=1.0), gens(3), "gumbel", NoiseParams(), K)
    probs = torch.softmax(logits, -1)
    top = probs.topk(K)
    torch.testing.assert_close(r.weights, top.values / top.values.sum(-1, keepdim=True))
    assert torch.equal(r.tokens, logits.argmax(-1)) and (r.logprobs == 0).all()


def test_multi_token_think_end_and_discrete_think_end_step() -> None:
    """Thinking ends when the last visible tokens equal the sequence; that step is discrete."""
    b = 2
    end = (11, 12)
    ph = PhaseTracker(b, end, soft_thinking=True)
    logits = torch.full((b, V), -20.0)
    seq = [11, 5, 11, 12, 3]  # row 0 emits 11,5,11,12 -> ends at step 3; row 1 emits 3 forever
    soft_flags = []
    for t, tok in enumerate(seq):
        lg = logits.clone()
        lg[0, tok] = 20.0
        lg[1, 3] = 20.0
        r = decode_step(lg, ph, settings(b), settings(b, k=1), gens(b, t), "gumbel", NoiseParams(), K)
        assert r.tokens[0].item() == tok
        soft_flags.append(bool(r.soft[0]))
    assert soft_flags == [True, True, True, False, False]
    assert ph.thinking.tolist() == [False, True]


def test_cold_stop_forces_after_exactly_n_low_entropy_steps() -> None:
    n = 3
    ph = PhaseTracker(1, (30, 31), soft_thinking=True, entropy_threshold=0.5, length_threshold=n)
    peaked = torch.full((1, V), -30.0)
    peaked[0, 4] = 30.0  # entropy ~ 0
    flat = torch.zeros(1, V)  # entropy log V
    steps = [flat, peaked, peaked, flat, peaked, peaked, peaked, peaked, peaked]
    out = []
    for t, lg in enumerate(steps):
        r = decode_step(lg, ph, settings(1), settings(1), gens(1, t), "gumbel", NoiseParams(), K)
        out.append((r.tokens.item(), bool(r.soft.item())))
    # the run resets at the flat step 3; steps 4,5,6 are low-entropy -> step 6 forced to 30, step 7 to 31
    assert out[6] == (30, False) and out[7] == (31, False)
    assert all(s for _, s in out[:6]) and out[8][1] is False
    assert not ph.thinking.item() and ph.cold_stopped.item()


def test_after_thinking_settings_apply_and_compat_flag_reproduces_bug() -> None:
    b = 64
    logits = torch.randn(1, V, generator=torch.Generator().manual_seed(5)).expand(b, -1)
    think, answer = settings(b, t=1.0, k=5, p=1.0), settings(b, t=1.0, k=1, p=1.0)
    ph = PhaseTracker(b, (39,), soft_thinking=False)  # all rows in the answer phase
    r = decode_step(logits, ph, think, answer, gens(b), "gumbel", NoiseParams(), K)
    assert (r.tokens == logits[0].argmax()).all() and not r.soft.any()  # after_thinking_top_k=1: greedy
    ph = PhaseTracker(b, (39,), soft_thinking=False)
    r = decode_step(logits, ph, think, answer, gens(b), "gumbel", NoiseParams(), K, compat_stale_phase_mask=True)
    assert r.tokens.unique().numel() > 1 and not r.soft.any()  # Gumbel-argmax over top-5 ignores top_k=1
    lp = torch.log_softmax(logits, -1).gather(-1, r.tokens.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(r.logprobs, lp)


def test_eos_free_soft_until_eos_tracker_never_ends() -> None:
    ph = PhaseTracker(2, (), soft_thinking=True, entropy_threshold=0.0)
    lg = torch.randn(2, V)
    for t in range(3):
        r = decode_step(lg, ph, settings(2), settings(2), gens(2, t), "gumbel", NoiseParams(), K)
        assert r.soft.all()
    assert ph.thinking.all()


def test_row_results_do_not_depend_on_batch_composition() -> None:
    logits = torch.randn(8, V, generator=torch.Generator().manual_seed(6)) * 2
    g_all = gens(8, 3)
    for noise in ("gumbel", "dirichlet", "gaussian"):
        full = soft_step(logits, settings(8), gens(8, 3), noise, NoiseParams(), K)
        alone = soft_step(logits[5:6], settings(1), [gens(8, 3)[5]], noise, NoiseParams(), K)
        assert torch.equal(full.ids[5], alone.ids[0]) and torch.equal(full.q[5], alone.q[0])
    d_full = discrete_step(logits, settings(8, k=-1, p=0.9), g_all, K)
    d_alone = discrete_step(logits[5:6], settings(1, k=-1, p=0.9), [gens(8, 3)[5]], K)
    assert d_full.tokens[5] == d_alone.tokens[0]


def test_tracker_select_drops_rows() -> None:
    ph = PhaseTracker(3, (7,), soft_thinking=True, entropy_threshold=1.0, length_threshold=2)
    ph.select(torch.tensor([0, 2]))
    assert ph.thinking.shape == (2,) and ph.window.shape == (2, 1)
