"""Tests of soft_thinking.core.trace: the rollout -> trainer contract (spec §2)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from soft_thinking.core.trace import SoftTrace, TraceBatch, collate_traces


def make_trace(
    T: int = 12,
    K: int = 5,
    seed: int = 0,
    answer_start: int | None = None,
    noise: str = "gumbel",
    tau_g: float = 0.1,
) -> SoftTrace:
    """A well-formed trace: soft steps before ``answer_start``, discrete steps from it on."""
    g = torch.Generator().manual_seed(seed)
    answer_start = T * 2 // 3 if answer_start is None else answer_start
    soft = torch.arange(T) < answer_start
    ids = torch.randint(1, 50_000, (T, K), generator=g, dtype=torch.int64).to(torch.int32)
    q = torch.randn(T, K, generator=g).sort(dim=-1, descending=True).values
    tokens = ids[:, 0].to(torch.int64)
    ids[~soft, 1:] = 0
    q[~soft] = 0
    logprobs = -torch.rand(T, generator=g) * 5
    return SoftTrace(
        tokens=tokens,
        ids=ids,
        q=q,
        soft=soft,
        logprobs=logprobs,
        noise=noise,
        tau_g=tau_g,
        temperature=1.0,
        answer_temperature=0.6,
        answer_start=answer_start,
    ).validate()


def assert_same(a: SoftTrace, b: SoftTrace) -> None:
    for name in ("tokens", "ids", "q", "soft", "logprobs"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        assert torch.equal(x, y), name
    for name in ("noise", "tau_g", "temperature", "answer_temperature", "answer_start"):
        assert getattr(a, name) == getattr(b, name), name
    assert a.equal(b)


# ---------------------------------------------------------------------------------------------
# basic properties
# ---------------------------------------------------------------------------------------------
def test_len_k_soft_share_and_step_temperatures():
    tr = make_trace(T=10, K=4, answer_start=7)
    assert len(tr) == 10 and tr.K == 4
    assert tr.soft_share == pytest.approx(0.7)
    temps = tr.step_temperatures()
    assert temps.dtype == torch.float32
    assert torch.equal(temps, torch.tensor([1.0] * 7 + [0.6] * 3))
    never = make_trace(T=5, answer_start=5)
    assert torch.equal(never.step_temperatures(), torch.ones(5))
    discrete = make_trace(T=4, answer_start=0)
    assert discrete.soft_share == 0.0
    assert torch.equal(discrete.step_temperatures(), torch.full((4,), 0.6))
    empty = make_trace(T=0, answer_start=0)
    assert len(empty) == 0 and empty.soft_share == 0.0 and empty.step_temperatures().shape == (0,)


def test_truncate():
    tr = make_trace(T=10, answer_start=7)
    cut = tr.truncate(4)
    assert len(cut) == 4 and cut.answer_start == 4
    assert torch.equal(cut.q, tr.q[:4]) and torch.equal(cut.ids, tr.ids[:4])
    cut.validate()
    cut8 = tr.truncate(8)
    assert cut8.answer_start == 7 and torch.equal(cut8.tokens, tr.tokens[:8])
    assert_same(tr.truncate(100), tr)
    assert len(tr.truncate(0)) == 0
    with pytest.raises(ValueError, match="n must be >= 0"):
        tr.truncate(-1)


# ---------------------------------------------------------------------------------------------
# serialization
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [0, 1, 13, 257])
@pytest.mark.parametrize("compress", [False, True])
def test_bytes_round_trip_exact(T, compress):
    tr = make_trace(T=T, seed=T, answer_start=min(T, 9))
    assert_same(SoftTrace.from_bytes(tr.to_bytes(compress=compress)), tr)


@pytest.mark.parametrize("T", [0, 1, 13])
def test_bytes_round_trip_exact_other_noise(T):
    tr = make_trace(T=T, seed=T + 1, noise="dirichlet", tau_g=1.0, answer_start=min(T, 5))
    assert_same(SoftTrace.from_bytes(tr.to_bytes()), tr)


def test_bytes_are_compact():
    T, K = 1000, 5
    tr = make_trace(T=T, K=K, answer_start=T)
    raw = T * K * 4 + T * K * 4 + T * 4 + T * 4 + T / 8  # ids int32, q float32, tokens, logprobs, soft bits
    size = len(tr.to_bytes())
    assert size < 1.2 * raw + 1024, (size, raw)


def test_soft_step_with_zero_candidates_stays_soft():
    """ids [5, 0, 0] with soft=True is a soft step (never inferred discrete from ids[1:] == 0)."""
    tr = SoftTrace(
        tokens=torch.tensor([5, 7], dtype=torch.int64),
        ids=torch.tensor([[5, 0, 0], [7, 0, 0]], dtype=torch.int32),
        q=torch.tensor([[1.5, -0.2, -13.8], [0.0, 0.0, 0.0]], dtype=torch.float32),
        soft=torch.tensor([True, False]),
        logprobs=torch.tensor([-0.3, -0.1], dtype=torch.float32),
        noise="gumbel",
        tau_g=0.1,
        temperature=1.0,
        answer_temperature=1.0,
        answer_start=1,
    ).validate()
    back = SoftTrace.from_bytes(tr.to_bytes())
    assert back.soft.tolist() == [True, False]
    assert_same(back, tr)
    batch = collate_traces([tr, back])
    assert batch.soft.tolist() == [[True, False], [True, False]]
    assert batch.q[0, 0, 2].item() == pytest.approx(-13.8)


# ---------------------------------------------------------------------------------------------
# collation
# ---------------------------------------------------------------------------------------------
def test_collate_shapes_and_padding():
    traces = [make_trace(T=6, seed=1, answer_start=4), make_trace(T=3, seed=2, answer_start=3)]
    traces.append(make_trace(T=0, seed=3, answer_start=0, tau_g=0.25))
    batch = collate_traces(traces)
    B, T, K = 3, 6, 5
    assert isinstance(batch, TraceBatch) and len(batch) == B and batch.noise == "gumbel"
    assert batch.tokens.shape == (B, T) and batch.tokens.dtype == torch.int64
    assert batch.ids.shape == (B, T, K) and batch.ids.dtype == torch.int64
    assert batch.q.shape == (B, T, K) and batch.q.dtype == torch.float32
    for name in ("soft", "mask"):
        assert getattr(batch, name).dtype == torch.bool
    assert batch.logprobs.dtype == torch.float32 and batch.temperatures.dtype == torch.float32
    assert torch.equal(batch.tau_g, torch.tensor([0.1, 0.1, 0.25], dtype=torch.float32))
    assert batch.mask.sum(dim=1).tolist() == [6, 3, 0]
    # content of the real positions
    assert torch.equal(batch.ids[1, :3], traces[1].ids.long())
    assert torch.equal(batch.q[0], traces[0].q)
    assert torch.equal(batch.logprobs[1, :3], traces[1].logprobs)
    assert batch.soft[0].tolist() == [True] * 4 + [False] * 2
    assert batch.temperatures[0].tolist() == pytest.approx([1.0] * 4 + [0.6] * 2)
    # padding values
    pad = ~batch.mask
    assert (batch.tokens[pad] == 0).all() and (batch.ids[pad] == 0).all() and (batch.q[pad] == 0).all()
    assert not batch.soft[pad].any() and (batch.logprobs[pad] == 0).all()
    assert (batch.temperatures[pad] == 1.0).all()
    # pad_to and device move
    wide = collate_traces(traces, pad_to=9).to("cpu")
    assert wide.q.shape == (3, 9, 5) and wide.mask.sum().item() == 9
    with pytest.raises(ValueError, match="trace 0 has 6 steps > pad_to=4"):
        collate_traces(traces, pad_to=4)


def test_collate_errors_name_the_index():
    with pytest.raises(ValueError, match="empty"):
        collate_traces([])
    with pytest.raises(ValueError, match="trace 2 has K=3"):
        collate_traces([make_trace(K=5), make_trace(K=5), make_trace(K=3)])
    with pytest.raises(ValueError, match="trace 1 has noise='none'"):
        collate_traces([make_trace(), make_trace(noise="none")])
    bad = make_trace()
    bad.q[-1, 1] = 0.5  # a discrete row with non-zero q
    with pytest.raises(ValueError, match=r"trace 1: SoftTrace\.q"):
        collate_traces([make_trace(), bad])


# ---------------------------------------------------------------------------------------------
# validation: one error per bad field
# ---------------------------------------------------------------------------------------------
def _broken(field: str) -> SoftTrace:
    tr = make_trace(T=6, answer_start=3)
    if field == "tokens":
        tr.tokens = tr.tokens.to(torch.int32)
    elif field == "ids":
        tr.ids = tr.ids[:, :0]
    elif field == "ids-discrete-tail":
        tr.ids[4, 2] = 9
    elif field == "ids-discrete-head":
        tr.ids[5, 0] += 1
    elif field == "q":
        tr.q = tr.q[:, :3]
    elif field == "q-discrete":
        tr.q[3, 0] = 1.0
    elif field == "q-nan":
        tr.q[0, 0] = float("nan")
    elif field == "soft":
        tr.soft = tr.soft.to(torch.int64)
    elif field == "logprobs":
        tr.logprobs = tr.logprobs[:5]
    elif field == "noise":
        tr.noise = "uniform"
    elif field == "tau_g":
        tr.tau_g = 0.0
    elif field == "temperature":
        tr.temperature = -1.0
    elif field == "answer_temperature":
        tr.answer_temperature = float("inf")
    elif field == "answer_start":
        tr.answer_start = 7
    return tr


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("tokens", "SoftTrace.tokens: dtype"),
        ("ids", r"SoftTrace.ids: must have shape \[T=6, K>=1\]"),
        ("ids-discrete-tail", r"SoftTrace.ids: discrete steps .* \[token, 0"),
        ("ids-discrete-head", r"SoftTrace.ids: .*ids\[t, 0\] must equal tokens\[t\]"),
        ("q", "SoftTrace.q: must have the shape of ids"),
        ("q-discrete", "SoftTrace.q: discrete steps"),
        ("q-nan", "SoftTrace.q: must be finite"),
        ("soft", "SoftTrace.soft: dtype"),
        ("logprobs", r"SoftTrace.logprobs: must have shape \[T=6\]"),
        ("noise", "SoftTrace.noise: 'uniform'"),
        ("tau_g", "SoftTrace.tau_g"),
        ("temperature", "SoftTrace.temperature:"),
        ("answer_temperature", "SoftTrace.answer_temperature"),
        ("answer_start", r"SoftTrace.answer_start: must lie in \[0, T=6\]"),
    ],
)
def test_validate_names_the_bad_field(case, message):
    with pytest.raises(ValueError, match=message):
        _broken(case).validate()


def test_corrupt_bytes_rejected():
    data = make_trace(T=4).to_bytes()
    tr = SoftTrace.from_bytes(data)
    tr.noise = "bogus"
    with pytest.raises(ValueError, match="SoftTrace.noise"):
        SoftTrace.from_bytes(tr.to_bytes())
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        arrays = dict(archive)
    header = json.loads(arrays["header"].tobytes().decode())
    arrays["header"] = np.frombuffer(json.dumps({**header, "version": 99}).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with pytest.raises(ValueError, match="version 99"):
        SoftTrace.from_bytes(buf.getvalue())


def test_n_kept_survives_round_trips_truncation_and_collation() -> None:
    t = SoftTrace(
        tokens=torch.tensor([5, 9, 2]),
        ids=torch.tensor([[5, 0, 0], [9, 3, 1], [2, 0, 0]], dtype=torch.int32),
        q=torch.tensor([[-0.1, -13.0, -13.2], [-0.5, -0.9, -2.0], [0.0, 0.0, 0.0]]),
        soft=torch.tensor([True, True, False]),
        logprobs=torch.tensor([-1.0, -2.0, -0.5]),
        noise="gumbel",
        tau_g=0.1,
        temperature=1.0,
        answer_temperature=0.6,
        answer_start=2,
        n_kept=torch.tensor([1, 3, 1], dtype=torch.int16),
    ).validate()
    assert SoftTrace.from_bytes(t.to_bytes()).equal(t)
    assert torch.equal(t.truncate(2).n_kept, torch.tensor([1, 3], dtype=torch.int16))
    batch = collate_traces([t, t.truncate(1)])
    assert batch.n_kept.tolist() == [[1, 3, 1], [1, 1, 1]]
    bad = SoftTrace(**{**t.__dict__, "n_kept": torch.tensor([0, 3, 1], dtype=torch.int16)})
    with pytest.raises(ValueError, match="n_kept"):
        bad.validate()
