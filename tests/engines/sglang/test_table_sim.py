"""Slot-table simulation of SGLang's continuous batching on CPU: admission, finish, slot reuse, row reorder and
retraction. Every request's tokens and trace must equal its run alone (with the same retraction)."""

import random
from types import SimpleNamespace

import pytest
import torch

from soft_thinking.core.batch import BatchSpec
from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.engines.sglang.codec import FLAG_RETRACTED, RowBytes, flags_of, pack_rows, trace_from_rows
from soft_thinking.engines.sglang.mixture import mixed_input_embeds
from soft_thinking.engines.sglang.settings import SoftRequest
from soft_thinking.engines.sglang.table import SlotTable, restored_phase
from soft_thinking.text import derive_seed

V, D, K = 48, 16, 6
END = (46, 47)


class TinyModel:
    """Next-token logits from the input embedding of the last position (computed row by row: batch-invariant)."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.e = torch.randn(V, D, generator=g)
        self.w = torch.randn(D, V, generator=g) * 2.0
        self.w[:, END[0]] += 0.6  # make the think-end reachable

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.embedding(ids, self.e)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.tanh(x[i]) @ self.w for i in range(x.shape[0])])


def request(i: int) -> SoftRequest | None:
    if i % 5 == 4:
        return None  # a discrete request: the stock sampler (argmax here)
    cfg = SoftThinkingConfig(max_topk=[2, 4, 6][i % 3], temperature=[1.0, 0.7, 0.0][i % 3], top_k=[-1, 5, 6][i % 3],
                             top_p=0.9, after_thinking_top_k=4, noise=["gumbel", "dirichlet", "gaussian", "none"][i % 4],
                             think_end_token_ids=END, early_stopping_entropy_threshold=0.3 if i % 2 else 0.0,
                             early_stopping_length_threshold=2)
    return SoftRequest(cfg.validate(), derive_seed("softgrpo", 0, i, 0))


class Scheduler:
    """A toy SGLang scheduler: prefill batch then decode batch per tick, slots from a free list."""

    def __init__(self, model: TinyModel, reorder_seed: int = 0) -> None:
        self.model = model
        self.table = SlotTable(BatchSpec(k_max=K, width=8, params=SoftThinkingConfig().noise_params()), rows=17, think_end_width=2)
        self.free = list(range(1, 17))  # slot 0 is SGLang's padding slot
        self.rs = random.Random(reorder_seed)
        self.owners: dict[int, list] = {}  # slot -> the requests admitted into it, in order

    def run(self, reqs: dict, arrive: dict, max_new: dict, retract_at: dict) -> dict:
        self.reqs = reqs
        out = {r: [] for r in reqs}
        rows = {r: [] for r in reqs}
        slot: dict = {}
        waiting: list = []
        running: list = []
        for tick in range(60):
            waiting += [r for r in reqs if arrive[r] == tick]
            if waiting:  # prefill (extend) batch
                batch, waiting = waiting, []
                for r in batch:
                    slot[r] = self.free.pop(0)
                    assert slot[r] not in {slot[o] for o in running}  # never two live requests in one slot
                    self.owners.setdefault(slot[r], []).append(r)
                prompt_last = torch.tensor([(out[r] or [r % 40])[-1] for r in batch])
                logits = self.model.logits(self.model.embed(prompt_last))
                self.table.admit([slot[r] for r in batch], [reqs[r] for r in batch], [out[r] for r in batch])
                retracted = torch.tensor([bool(out[r]) for r in batch])
                self._sample(batch, logits, slot, out, rows, retracted)
                running += batch
            running = self._finish(running, slot, out, max_new, retract_at, waiting)
            if running:  # decode batch, rows in a new order each tick
                self.rs.shuffle(running)
                slots = torch.tensor([slot[r] for r in running])
                last = torch.tensor([out[r][-1] for r in running])
                x = mixed_input_embeds(self.model.embed, last, self.table.ids[slots], self.table.w[slots],
                                       self.table.mix_on[slots])
                self._sample(running, self.model.logits(x), slot, out, rows, None)
                running = self._finish(running, slot, out, max_new, retract_at, waiting)
            if not running and not waiting and tick > max(arrive.values()):
                break
        return {r: (out[r], rows[r]) for r in reqs}

    def _sample(self, batch, logits, slot, out, rows, retracted) -> None:
        slots = torch.tensor([slot[r] for r in batch])
        seq_lens = torch.tensor([7 + r + len(out[r]) for r in batch])  # prompt length 7 + r
        step = self.table.step(logits, slots, seq_lens)
        stock = logits.argmax(-1)
        tokens = torch.where(self.table.soft_req[slots], step.tokens, stock)
        widths = [self.reqs[r].config.max_topk if self.reqs[r] is not None else K for r in batch]  # each request's K
        packed = RowBytes(pack_rows(step, retracted), widths=widths)
        for i, r in enumerate(batch):
            out[r].append(int(tokens[i]))
            rows[r].append(packed[i])

    def _finish(self, running, slot, out, max_new, retract_at, waiting) -> list:
        keep = []
        for r in running:
            if len(out[r]) >= max_new[r]:
                self.free.append(slot.pop(r))  # finished: the slot goes back (and is reused)
            elif retract_at.get(r) == len(out[r]):
                retract_at[r] = None
                self.free.append(slot.pop(r))
                waiting.append(r)  # re-prefilled from its token ids on the next tick
            else:
                keep.append(r)
        return keep


def test_each_request_equals_its_solo_run() -> None:
    model = TinyModel()
    n = 14
    reqs = {r: request(r) for r in range(n)}
    rs = random.Random(3)
    arrive = {r: rs.randrange(0, 12) for r in reqs}
    max_new = {r: rs.randrange(4, 16) for r in reqs}
    retract = {r: 3 for r in (1, 6, 9)}
    sched = Scheduler(model, reorder_seed=1)
    together = sched.run(reqs, arrive, max_new, dict(retract))
    # slots were reused (a finished or retracted request's slot went to a later one)
    assert any(len(owners) > 1 for owners in sched.owners.values()), sched.owners
    n_soft = 0
    for r in reqs:
        alone = Scheduler(model).run({r: reqs[r]}, {r: 0}, {r: max_new[r]}, {r: retract.get(r)})
        assert together[r] == alone[r], r
        tokens, rows = together[r]
        assert len(tokens) == max_new[r]
        if reqs[r] is not None:
            n_soft += 1
            assert {len(row) for row in rows} == {8 * reqs[r].config.max_topk + 7}  # rows at the request's K
            trace = trace_from_rows(rows, tokens, reqs[r])
            assert len(trace) == len(tokens) and torch.equal(trace.tokens, torch.tensor(tokens))
            flags = flags_of(rows)
            assert bool(flags[3] & FLAG_RETRACTED) == (r in retract) and not (flags[:3] & FLAG_RETRACTED).any()
    assert n_soft >= 10
    # the run mixed phases and soft/discrete steps
    soft_flags = [flags_of(rows) & 1 for r, (_, rows) in together.items() if reqs[r] is not None]
    assert any(f.all() for f in soft_flags) or any(f.any() and not f.all() for f in soft_flags)


def test_slot_reuse_resets_state_for_a_discrete_owner() -> None:
    """A discrete request in a slot a soft request used must see exactly its token embedding."""
    model = TinyModel()
    sched = Scheduler(model)
    sched.free = [1]  # a single slot, reused
    reqs = {0: request(0), 4: None}
    res = sched.run(reqs, {0: 0, 4: 20}, {0: 6, 4: 6}, {})
    alone = Scheduler(model).run({4: None}, {4: 0}, {4: 6}, {})
    assert res[4] == alone[4]
    assert not sched.table.mix_on[1] and not sched.table.soft_req[1]


def test_restored_phase_after_retraction() -> None:
    req = request(0)
    assert restored_phase(req, []) == (True, [])
    assert restored_phase(req, [3, 46, 5]) == (True, [46, 5])
    assert restored_phase(req, [3, 46, 47, 9]) == (False, [47, 9])


def test_sample_side_step_and_packing_are_sync_free() -> None:
    """What the sample hook runs on the device per step (gather, batched step, index_copy_, pack) is one graph."""
    from sync_free import assert_sync_free  # tests/sync_free.py

    model = TinyModel()
    sched = Scheduler(model)
    reqs = [request(i) for i in range(5)]
    sched.table.admit([3, 4, 5, 6, 7], reqs, None)
    slots = torch.tensor([5, 3, 7, 4, 6])
    logits = model.logits(model.embed(torch.tensor([1, 2, 3, 4, 5])))
    ref_table = Scheduler(model).table
    ref_table.admit([3, 4, 5, 6, 7], reqs, None)
    ref = pack_rows(ref_table.step(logits, slots, torch.tensor([9, 9, 9, 9, 9])))
    got = assert_sync_free(lambda lg, s, q: pack_rows(sched.table.step(lg, s, q)), logits, slots, torch.full((5,), 9))
    assert torch.equal(got, ref)
    assert torch.equal(sched.table.ids, ref_table.ids) and torch.equal(sched.table.mix_on, ref_table.mix_on)


def test_server_noise_kinds_limit_the_step_and_refuse_other_kinds() -> None:
    from soft_thinking.engines.sglang import hooks
    from soft_thinking.engines.sglang.settings import SettingsError, server_kinds

    assert server_kinds({}) == ("none", "gumbel", "dirichlet", "gaussian")
    assert server_kinds({"SOFTGRPO_SGLANG_NOISE_KINDS": " gumbel,none,gumbel "}) == ("gumbel", "none")
    for bad in ("gumbel,levy", ","):
        with pytest.raises(SettingsError, match="SOFTGRPO_SGLANG_NOISE_KINDS=.*allowed a comma-separated subset"):
            server_kinds({"SOFTGRPO_SGLANG_NOISE_KINDS": bad})
    st = hooks.PluginState.from_env({"SOFTGRPO_SGLANG": "on", "SOFTGRPO_SGLANG_NOISE_KINDS": "gumbel"})
    assert st.spec().kinds == ("gumbel",)
    flags = {"enable_soft_thinking": True, "max_topk": 3, "think_end_ids": [46], "seed": 1, "after_thinking_top_k": 5}
    sp = SimpleNamespace(temperature=1.0, top_p=1.0, top_k=1 << 30, min_p=0.0)
    assert st.parse({**flags, "noise": "gumbel"}, sp, V).config.noise == "gumbel"
    with pytest.raises(SettingsError, match=r"noise='dirichlet'.*allowed \('gumbel',\)"):
        st.parse({**flags, "noise": "dirichlet"}, sp, V)
    with pytest.raises(SettingsError, match=r"noise='none'"):  # greedy: the noise-free mixture
        st.parse({**flags, "noise": "gumbel", "temperature": 0}, sp, V)
    # the table refuses a kind its step does not draw (never a silent noise-free step)
    table = SlotTable(st.spec(), rows=4, think_end_width=2)
    with pytest.raises(ValueError, match="noise='dirichlet' is not among the table's kinds"):
        table.admit([1], [request(1)])
    table.admit([1], [request(0)])  # gumbel: fine


def test_compiled_table_flag_and_padded_bucket_step_equal_eager() -> None:
    """SOFTGRPO_SGLANG_COMPILE selects the compiled table; a batch padded to its bucket (rows -> slot 0)
    gives the eager table's step and state (traced with the eager backend here: the padding logic)."""
    from soft_thinking.engines.sglang import hooks

    assert hooks.compile_flag({}) is False and hooks.compile_flag({"SOFTGRPO_SGLANG_COMPILE": "1"}) is True
    assert hooks.compile_flag({}, device="cuda:0") is True  # auto: compiled on CUDA, eager on CPU
    assert hooks.compile_flag({"SOFTGRPO_SGLANG_COMPILE": "0"}, device="cuda") is False
    with pytest.raises(hooks.SettingsError, match="SOFTGRPO_SGLANG_COMPILE='yes' is invalid: allowed 'auto', '0' or '1'"):
        hooks.compile_flag({"SOFTGRPO_SGLANG_COMPILE": "yes"})
    model = TinyModel()
    spec = BatchSpec(k_max=K, width=8, params=SoftThinkingConfig().noise_params())
    eager = SlotTable(spec, rows=17, think_end_width=2)
    compiled = SlotTable(spec, rows=17, think_end_width=2, compile_step=True, compile_backend="eager")
    reqs = [request(i) for i in range(11)]
    for t in (eager, compiled):
        t.admit(list(range(3, 14)), reqs)
    slots = torch.tensor([9, 3, 12, 5, 4, 13, 7, 6, 11, 10, 8])  # 11 rows: padded to 16
    for step in range(3):
        logits = model.logits(model.embed(torch.arange(11) + step))
        lens = torch.arange(11) + 20 + step
        a, b = eager.step(logits, slots, lens), compiled.step(logits, slots, lens)
        assert b.tokens.shape == (11,)
        for f in ("tokens", "ids", "q", "weights", "soft", "logprobs"):
            assert torch.equal(getattr(a, f), getattr(b, f)), f
    for name in ("ids", "w", "mix_on", "soft_req"):
        assert torch.equal(getattr(eager, name), getattr(compiled, name)), name
    assert not compiled.mix_on[0] and not compiled.soft_req[0] and compiled.ids[0].eq(0).all()  # slot 0 untouched
