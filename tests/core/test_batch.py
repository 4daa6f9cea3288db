"""The sync-free batched step: equal to decode_step per row given the same uniforms, compiles with
fullgraph=True, statistics of the counter generator through it, batch invariance with rows joining/leaving."""

import numpy as np
import pytest
import torch
from scipy import stats
from sync_free import assert_sync_free  # tests/sync_free.py (tests/ is on sys.path: its conftest)

from soft_thinking.core.batch import (
    BatchSpec,
    RowSettings,
    StepUniforms,
    batched_decode_step,
    counter_step_uniforms,
)
from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.core.noise import NOISE_KINDS, GeneratorSource, get_noise
from soft_thinking.core.phase import PhaseState
from soft_thinking.core.plan import StepPlan, new_phase
from soft_thinking.core.rng import STREAM_SAMPLE
from soft_thinking.core.step import decode_step
from soft_thinking.text import derive_seed

V = 40
END = (38, 39)


def row_configs(n: int, seed: int, **shared) -> list[SoftThinkingConfig]:
    """Rows with varied per-row settings (noise kind, K, filters, T, tau_g, noise factor)."""
    rs = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = float(rs.choice([0.0, 0.7, 1.0, 1.0]))
        out.append(SoftThinkingConfig(
            max_topk=int(rs.choice([1, 3, 5])),
            temperature=t,
            top_k=int(rs.choice([-1, 3, 5])),
            top_p=float(rs.choice([0.8, 1.0])),
            min_p=float(rs.choice([0.0, 0.1])),
            after_thinking_temperature=float(rs.choice([0.0, 0.6, 1.0])),
            after_thinking_top_k=int(rs.choice([-1, 2, 6])),
            after_thinking_top_p=float(rs.choice([0.9, 1.0])),
            noise=NOISE_KINDS[i % 4],
            gumbel_softmax_temperature=float(rs.choice([0.1, 0.5])),
            noise_factor=float(rs.choice([1.0, 2.0])),
            think_end_token_ids=END,
            **shared,
        ))
    return out


def scripted_logits(b: int, steps: int, seed: int) -> list[torch.Tensor]:
    """Random logits; some rows are pushed to the think-end pieces or to low entropy at some steps."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for t in range(steps):
        z = torch.randn(b, V, generator=g) * 2
        for r in range(b):
            if (r + t) % 5 == 0:
                z[r, END[0]] += 12
            if (r + t) % 5 == 1:
                z[r, END[1]] += 12
            if r % 3 == 0 and 2 <= t <= 6:
                z[r, 4] += 25  # a low-entropy run (Cold Stop)
        out.append(z)
    return out


def uniforms_of(states: list[torch.Tensor], plan: StepPlan, spec: BatchSpec) -> StepUniforms:
    """What each row's generator would hand decode_step this step, laid out for the batched step."""
    b = len(states)
    noise = {kind: torch.full((b, spec.k_max, len(get_noise(kind).streams(spec.params))), 0.5, dtype=torch.float64)
             for kind in spec.kinds}
    sample = torch.zeros(b, dtype=torch.float64)
    for r, st in enumerate(states):
        kind, k = NOISE_KINDS[int(plan.noise[r])], int(plan.max_topk[r])
        src = GeneratorSource([torch.Generator().set_state(st)])
        noise[kind][r, :k] = src(k, get_noise(kind).streams(spec.params))[0]
        sample[r] = GeneratorSource([torch.Generator().set_state(st)])(1, (STREAM_SAMPLE,))[0, 0, 0]
    return StepUniforms(noise, sample)


def run_both(configs, steps: int, seed: int, width: int | None = None):
    b = len(configs)
    plan = StepPlan.build(configs)
    spec = BatchSpec.from_plan(plan, width=width or V)
    rows = RowSettings.from_plan(plan)
    tracker = new_phase(configs)
    state = PhaseState.new(b, END, soft_thinking=True, entropy_threshold=configs[0].early_stopping_entropy_threshold,
                           length_threshold=configs[0].early_stopping_length_threshold)
    gens = [torch.Generator().manual_seed(seed * 100 + r) for r in range(b)]
    pairs = []
    for logits in scripted_logits(b, steps, seed):
        u = uniforms_of([g.get_state() for g in gens], plan, spec)
        ref = decode_step(logits, tracker, plan, gens)
        got, state = batched_decode_step(logits, state, rows, u, spec)
        pairs.append((ref, got))
        assert torch.equal(state.thinking, tracker.thinking) and torch.equal(state.cold_stopped, tracker.cold_stopped)
    return pairs


def assert_step_equal(ref, got) -> None:
    """Bit for bit (measured: every field identical on CPU, float64 references aside)."""
    for name in ("tokens", "ids", "soft", "n_kept", "q", "weights", "logprobs", "token_logprobs", "entropy"):
        assert torch.equal(getattr(ref, name), getattr(got, name)), name


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shared", [
    {},
    {"early_stopping_entropy_threshold": 0.3, "early_stopping_length_threshold": 3},
    {"compat_stale_phase_mask": True},
    {"logprob_mode": "exact", "degenerate_as_discrete": True},
])
def test_equals_decode_step_per_row(seed: int, shared: dict) -> None:
    pairs = run_both(row_configs(16, seed, **shared), steps=10, seed=seed)
    for ref, got in pairs:
        assert_step_equal(ref, got)
        assert not got.truncated.any()
    soft = torch.stack([g.soft for _, g in pairs])
    ended = torch.stack([g.answer for _, g in pairs])
    assert soft.any() and (~soft).any() and ended.any()  # both phases were exercised
    kept = torch.stack([g.n_kept for _, g in pairs])[soft]
    assert (kept == 1).any() and (kept > 1).any()  # degenerate and real mixtures
    if "early_stopping_entropy_threshold" in shared:
        assert any((g.tokens == END[0]).any() for _, g in pairs)


def test_narrow_width_is_exact_when_prefixes_fit_and_flags_the_rest() -> None:
    configs = [c.replace(after_thinking_top_k=min(max(c.after_thinking_top_k, 1), 6)) for c in row_configs(16, 7)]
    for ref, got in run_both(configs, steps=8, seed=7, width=8):
        assert_step_equal(ref, got)
        assert not got.truncated.any()
    # answer rows with top_k off and a flat distribution overflow a width of 8: flagged, never silent
    flat = [c.replace(after_thinking_top_k=-1, after_thinking_top_p=1.0, after_thinking_temperature=1.0) for c in configs]
    plan = StepPlan.build(flat)
    spec = BatchSpec.from_plan(plan, width=8)
    state = PhaseState.new(16, END, soft_thinking=False)
    u = counter_step_uniforms(torch.arange(16), torch.zeros(16, dtype=torch.long), spec)
    got, _ = batched_decode_step(torch.zeros(16, V), state, RowSettings.from_plan(plan), u, spec)
    assert got.truncated.all()


def test_compiles_fullgraph_without_host_sync() -> None:
    configs = row_configs(8, 3, early_stopping_entropy_threshold=0.3, early_stopping_length_threshold=2)
    plan = StepPlan.build(configs)
    spec = BatchSpec.from_plan(plan, width=12)
    rows = RowSettings.from_plan(plan)

    def step(logits, state, seed, position):
        return batched_decode_step(logits, state, rows, counter_step_uniforms(seed, position, spec), spec)

    compiled = torch.compile(step, fullgraph=True, backend="eager")
    state_e = state_c = PhaseState.new(8, END, soft_thinking=True, entropy_threshold=0.3, length_threshold=2)
    seed = torch.tensor([derive_seed("c", i) for i in range(8)])
    logits_list = scripted_logits(8, 4, 3)
    assert_sync_free(step, logits_list[0], state_e, seed, torch.full((8,), 20))
    for t, logits in enumerate(logits_list):
        pos = torch.full((8,), 20 + t)
        ref, state_e = step(logits, state_e, seed, pos)
        got, state_c = compiled(logits, state_c, seed, pos)
        for name in ("tokens", "ids", "q", "weights", "soft", "logprobs", "answer"):
            assert torch.equal(getattr(ref, name), getattr(got, name)), name
    # the checker has teeth: .item(), nonzero() and bool(tensor) are all refused
    for bad in (lambda x: x * x.sum().item(), lambda x: x[x.nonzero()], lambda x: x[x > 0]):
        with pytest.raises(AssertionError, match="host synchronisation"):
            assert_sync_free(bad, torch.ones(3))
    with pytest.raises(Exception, match="(?i)data.dependent|bool|Unsupported"):
        assert_sync_free(lambda x: x if bool(x.sum() > 0) else -x, torch.ones(3))


def test_counter_noise_through_the_step_chi_square() -> None:
    """argmax q of gumbel rows ~ p~, and answer rows sample the filtered p, under the counter RNG."""
    n = 4000
    z = torch.tensor([2.0, 1.5, 1.0, 0.0, -1.0] + [-9.0] * (V - 5))
    cfg = SoftThinkingConfig(max_topk=4, top_k=4, top_p=1.0, think_end_token_ids=END, noise="gumbel",
                             gumbel_clamp=None,  # the Gumbel-max trick is exact only unclamped
                             after_thinking_top_k=3, after_thinking_top_p=1.0)
    plan = StepPlan.build([cfg] * n)
    spec = BatchSpec.from_plan(plan, width=8)
    rows = RowSettings.from_plan(plan)
    seed = torch.tensor([derive_seed("chi", i) for i in range(n)])
    u = counter_step_uniforms(seed, torch.full((n,), 50), spec)
    for thinking, k in ((True, 4), (False, 3)):
        state = PhaseState.new(n, END, soft_thinking=thinking)
        got, _ = batched_decode_step(z.expand(n, -1), state, rows, u, spec)
        p = torch.softmax(z, -1)[:k].double()
        expected = (p / p.sum()).numpy() * n
        counts = np.bincount(got.tokens.numpy(), minlength=V)
        assert counts[k:].sum() == 0
        assert stats.chisquare(counts[:k], expected).pvalue > 1e-3
        wrong = torch.softmax(z[:k].double() * 1.3, -1).numpy() * n  # negative control
        assert stats.chisquare(counts[:k], wrong).pvalue < 1e-3


class PerRowModel:
    """A tiny deterministic 'model': next logits from the mixed input embedding, computed row by row."""

    def __init__(self, d: int = 16) -> None:
        g = torch.Generator().manual_seed(0)
        self.e = torch.randn(V, d, generator=g)
        self.w = torch.randn(d, V, generator=g) * 1.5

    def __call__(self, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.tanh(weights[i] @ self.e[ids[i]]) @ self.w for i in range(ids.shape[0])])


def test_a_request_alone_equals_it_inside_a_batch_of_64_with_joins_and_leaves() -> None:
    n_req, steps = 64, 12
    rs = np.random.default_rng(5)
    configs = row_configs(n_req, 5, early_stopping_entropy_threshold=0.2, early_stopping_length_threshold=2)
    arrive = rs.integers(0, 8, n_req)
    length = rs.integers(3, steps, n_req)
    prompt_len = rs.integers(5, 30, n_req)
    seeds = [derive_seed("softgrpo", 0, r, 0) for r in range(n_req)]
    model = PerRowModel()
    spec = BatchSpec(k_max=5, width=V, params=BatchSpec.from_plan(StepPlan.build(configs)).params)

    def fresh(r: int):
        cfg = configs[r]
        state = PhaseState.new(1, END, soft_thinking=True, entropy_threshold=cfg.early_stopping_entropy_threshold,
                               length_threshold=cfg.early_stopping_length_threshold)
        return state, RowSettings.from_plan(StepPlan.build([cfg]))

    def run(schedule: list[list[int]]) -> dict[int, list[tuple]]:
        traces: dict[int, list[tuple]] = {}
        members: list[int] = []
        state = rows = None
        last_ids = {}
        for arrivals in schedule:
            for r in arrivals:
                s, rw = fresh(r)
                state = s if state is None else PhaseState.cat([state, s])
                rows = rw if rows is None else RowSettings.cat([rows, rw])
                members.append(r)
                last_ids[r] = (torch.tensor([[r % V, 0, 0, 0, 0]]), torch.tensor([[1.0, 0, 0, 0, 0]]))
            keep = [i for i, r in enumerate(members) if len(traces.get(r, [])) < length[r]]
            if len(keep) < len(members):
                idx = torch.tensor(keep, dtype=torch.long)
                state, rows, members = state.select(idx), rows.select(idx), [members[i] for i in keep]
            if not members:
                continue
            logits = model(torch.cat([last_ids[r][0] for r in members]), torch.cat([last_ids[r][1] for r in members]))
            pos = torch.tensor([int(prompt_len[r]) + len(traces.get(r, [])) for r in members])
            u = counter_step_uniforms(torch.tensor([seeds[r] for r in members]), pos, spec)
            got, state = batched_decode_step(logits, state, rows, u, spec)
            for i, r in enumerate(members):
                traces.setdefault(r, []).append((got.tokens[i].item(), got.ids[i].tolist(), got.q[i].tolist(),
                                                 got.soft[i].item(), got.logprobs[i].item()))
                last_ids[r] = (got.ids[i:i + 1], got.weights[i:i + 1])
        return traces

    together = run([[r for r in range(n_req) if arrive[r] == t] for t in range(steps + 10)])
    assert max(len([r for r in range(n_req) if arrive[r] <= t < arrive[r] + length[r]]) for t in range(20)) > 32
    for r in range(0, n_req, 7):
        alone = run([[r]] + [[] for _ in range(steps + 2)])
        assert together[r] == alone[r], r
    assert any(any(not s for _, _, _, s, _ in tr) for tr in together.values())  # phases changed somewhere


def test_decode_step_with_the_counter_source_equals_the_batched_step() -> None:
    """The reference engine's path (CounterSource, per-row K groups) and the sync-free step draw the same noise."""
    from soft_thinking.core.noise import CounterSource

    configs = row_configs(12, 9, early_stopping_entropy_threshold=0.3, early_stopping_length_threshold=2)
    plan = StepPlan.build(configs)
    spec = BatchSpec.from_plan(plan, width=V)
    rows = RowSettings.from_plan(plan)
    tracker = new_phase(configs)
    state = PhaseState.new(12, END, soft_thinking=True, entropy_threshold=0.3, length_threshold=2)
    seed = torch.tensor([derive_seed("softgrpo", 0, i, 0) for i in range(12)])
    prompt_len = torch.arange(12) + 5
    for t, logits in enumerate(scripted_logits(12, 8, 9)):
        pos = prompt_len + t
        ref = decode_step(logits, tracker, plan, CounterSource(seed, pos))
        got, state = batched_decode_step(logits, state, rows, counter_step_uniforms(seed, pos, spec), spec)
        assert_step_equal(ref, got)
