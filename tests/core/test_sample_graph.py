"""The sample step as one graph: how many aten ops one step costs (counted on the ``meta`` device),
that the step's uniforms equal the per-kind counter streams bit for bit, and that
``torch.compile(sample_step, fullgraph=True)`` (inductor, CPU) equals the eager step and compiles
once per batch bucket."""

from __future__ import annotations

import collections
from dataclasses import fields

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from soft_thinking.core.batch import (
    BatchSpec,
    RowSettings,
    batched_decode_step,
    counter_step_uniforms,
    sample_step,
    uniform_layout,
)
from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.core.noise import NOISE_KINDS, get_noise
from soft_thinking.core.phase import PhaseState
from soft_thinking.core.plan import StepPlan
from soft_thinking.core.rng import STREAM_SAMPLE, counter_uniforms
from soft_thinking.core.sampling import SamplingTensors
from soft_thinking.text import derive_seed

END = (7,)
# measured (torch 2.13, CPU): gumbel-only step 404 kernel ops (+62 views), all kinds 550; before the
# stacked Philox and kind selection (ops with views) a gumbel step took 853 and the all-kinds step 3,571
KERNEL_OP_BUDGET = 420


class OpCount(TorchDispatchMode):
    """Counts aten ops; views (no kernel launch on a GPU) are counted apart."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()
        self.views = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.is_view:
            self.views += 1
        else:
            self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))

    @property
    def kernels(self) -> int:
        return sum(self.ops.values())


def to(x, device):
    if isinstance(x, SamplingTensors):
        return SamplingTensors(*(to(getattr(x, f.name), device) for f in fields(x)))
    if isinstance(x, torch.Tensor):
        return x.to(device)
    return type(x)(**{f.name: to(getattr(x, f.name), device) for f in fields(x)})


def batch(kinds: tuple[str, ...], b: int = 32, k: int = 5, device: str = "cpu"):
    configs = [SoftThinkingConfig(max_topk=k, top_k=k, noise=kinds[-1] if kinds[-1] != "none" else "gumbel",
                                  think_end_token_ids=END, temperature=1.0 if kinds[-1] != "none" else 0.0)] * b
    plan = StepPlan.build(configs)
    spec = BatchSpec(k_max=k, width=8, kinds=kinds, params=BatchSpec.from_plan(plan).params, opts=plan.logprob)
    rows = to(RowSettings.from_plan(plan), device)
    state = to(PhaseState.new(b, END, soft_thinking=True, entropy_threshold=0.3, length_threshold=3), device)
    return spec, rows, state


def count_step(kinds: tuple[str, ...], b: int = 32, v: int = 1000) -> tuple[OpCount, OpCount]:
    spec, rows, state = batch(kinds, b, device="meta")
    logits = torch.empty(b, v, device="meta")
    seed = torch.empty(b, dtype=torch.int64, device="meta")
    with OpCount() as rng:
        u = counter_step_uniforms(seed, seed, spec)
    with OpCount() as step:
        batched_decode_step(logits, state, rows, u, spec)
    return rng, step


def test_op_budget_of_a_gumbel_step_with_negative_controls() -> None:
    rng, step = count_step(("gumbel",))
    total = rng.kernels + step.kernels
    assert total <= KERNEL_OP_BUDGET, (rng.kernels, step.kernels, step.ops.most_common(8))
    # the Philox of the whole step is one evaluation: about 11 kernel ops a round
    assert rng.kernels <= 175, rng.ops.most_common(8)
    # negative control 1: every kind drawn for every row is over the budget
    rng_all, step_all = count_step(NOISE_KINDS)
    assert rng_all.kernels + step_all.kernels > KERNEL_OP_BUDGET
    # ... but its Philox is still one evaluation (blocks 0..8 together): not 11 separate ones
    assert rng_all.kernels <= rng.kernels + 20  # + the Dirichlet column index (arange runs)
    # negative control 2: drawing each stream group separately (the old layout) costs a Philox per group
    spec = batch(NOISE_KINDS, device="meta")[0]
    seed = torch.empty(32, dtype=torch.int64, device="meta")
    with OpCount() as separate:
        for kind in spec.kinds:
            if get_noise(kind).stochastic:
                counter_uniforms(seed, seed, spec.k_max, get_noise(kind).streams(spec.params))
        counter_uniforms(seed, seed, 1, (STREAM_SAMPLE,))
    assert separate.kernels > 3 * rng_all.kernels


@pytest.mark.parametrize("kinds", [("gumbel",), ("none", "gumbel"), ("dirichlet", "gaussian"), NOISE_KINDS, ()])
def test_step_uniforms_equal_the_per_kind_streams(kinds: tuple[str, ...]) -> None:
    spec = batch(kinds or ("none",))[0]
    spec = BatchSpec(k_max=spec.k_max, width=spec.width, kinds=kinds, params=spec.params, opts=spec.opts)
    seed = torch.tensor([derive_seed("layout", i) for i in range(16)])
    pos = torch.arange(16) * 131 + 5
    u = counter_step_uniforms(seed, pos, spec)
    assert set(u.noise) == set(kinds)  # only the configured kinds are drawn
    for kind in kinds:
        ref = counter_uniforms(seed, pos, spec.k_max, get_noise(kind).streams(spec.params))
        assert u.noise[kind].shape == ref.shape and torch.equal(u.noise[kind], ref), kind
    assert torch.equal(u.sample, counter_uniforms(seed, pos, 1, (STREAM_SAMPLE,))[:, 0, 0])
    blocks = uniform_layout(spec)[0]
    assert blocks[0] == 0 and len(blocks) == (9 if "dirichlet" in kinds else 1)


def test_sample_step_is_counter_uniforms_then_the_batched_step() -> None:
    spec, rows, state = batch(("none", "gumbel"), b=8)
    logits = torch.randn(8, 50, generator=torch.Generator().manual_seed(0))
    seed, pos = torch.arange(8) * 7 + 1, torch.arange(8) + 30
    got, _ = sample_step(logits, state, rows, seed, pos, spec)
    ref, _ = batched_decode_step(logits, state, rows, counter_step_uniforms(seed, pos, spec), spec)
    for f in fields(got):
        assert torch.equal(getattr(got, f.name), getattr(ref, f.name)), f.name
    # and the uniforms matter: other positions give other candidates' noise
    other, _ = batched_decode_step(logits, state, rows, counter_step_uniforms(seed, pos + 1, spec), spec)
    assert not torch.equal(other.q, got.q)


EXACT = ("tokens", "ids", "soft", "n_kept", "answer", "truncated", "forced")
CLOSE = ("q", "weights", "logprobs", "token_logprobs", "entropy")


@pytest.mark.slow
def test_compiled_sample_step_equals_eager_and_compiles_once_per_bucket() -> None:
    """Inductor reorders float sums (log-softmax, entropy): integer/bool fields equal, floats within 2e-6
    (measured: max |diff| 1e-6 on q, weights, log-probs and entropy); one graph for every step."""
    import torch._dynamo
    import torch._inductor.metrics as metrics

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # reset() keeps the counters: count this test's graphs only
    metrics.reset()
    b, v = 16, 64
    spec, rows, state = batch(("none", "gumbel"), b=b)
    rows.think.temperature[::4] = 0.0  # greedy rows take the noise-free mixture
    rows.noise[::4] = NOISE_KINDS.index("none")
    compiled = torch.compile(sample_step, fullgraph=True, dynamic=False)
    seed = torch.tensor([derive_seed("graph", i) for i in range(b)])
    g = torch.Generator().manual_seed(1)
    eager_state = compiled_state = state
    soft_steps = discrete_steps = 0
    for t in range(5):
        logits = torch.randn(b, v, generator=g) * 3
        logits[t::5, END[0]] += 20  # some rows end thinking
        pos = torch.full((b,), 40 + t) + torch.arange(b)
        ref, eager_state = sample_step(logits, eager_state, rows, seed, pos, spec)
        with torch._dynamo.config.patch(error_on_recompile=t > 0):
            got, compiled_state = compiled(logits, compiled_state, rows, seed, pos, spec)
        for name in EXACT:
            assert torch.equal(getattr(got, name), getattr(ref, name)), (t, name)
        for name in CLOSE:
            torch.testing.assert_close(getattr(got, name), getattr(ref, name), rtol=0, atol=2e-6, msg=name)
        assert torch.equal(compiled_state.thinking, eager_state.thinking)
        soft_steps, discrete_steps = soft_steps + int(ref.soft.sum()), discrete_steps + int((~ref.soft).sum())
    assert soft_steps > 10 and discrete_steps > 10 and ref.answer.sum() > 8  # rows ended thinking one by one
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    assert 0 < metrics.generated_kernel_count <= 40  # measured 25-30 fused kernels for the whole step
