"""The Req and sample hooks on CPU, fed the attributes SGLang passes (names checked in test_source_contract.py):
soft requests get a private radix key, bad ones are aborted by name, the sample hook reads the logits before the
stock sampler scales them, overrides only soft rows and attaches one trace row per request."""

from types import SimpleNamespace

import pytest
import torch

from soft_thinking.engines.sglang import hooks
from soft_thinking.engines.sglang.codec import TRACE_KEY, decode_rows
from soft_thinking.engines.sglang.table import SlotTable

V = 30
FLAGS = {"enable_soft_thinking": True, "max_topk": 3, "top_k": 3, "think_end_ids": [29], "noise": "gumbel"}


class Req:
    """The Req attributes the hook reads and writes."""

    def __init__(self, rid: str, custom_params=None, slot: int = 1, **sp) -> None:
        self.rid, self.req_pool_idx, self.output_ids, self.extra_key = rid, slot, [], None
        self.sampling_params = SimpleNamespace(custom_params=custom_params, temperature=1.0, top_p=1.0, top_k=1 << 30,
                                               min_p=0.0, **sp)
        self.top_logprobs_num, self.token_ids_logprob, self.return_hidden_states, self.vocab_size = 0, None, False, V
        self.aborted = None

    def set_finish_with_abort(self, error_msg: str) -> None:
        self.aborted = error_msg


@pytest.fixture()
def state(monkeypatch):
    st = hooks.PluginState.from_env({"SOFTGRPO_SGLANG": "on", "SOFTGRPO_SGLANG_MAX_TOPK": "4"})
    monkeypatch.setattr(hooks, "STATE", st)
    return st


def test_req_hook(state) -> None:
    soft = Req("a", {**FLAGS, "seed": 7})
    hooks.after_req_init(None, soft)
    assert soft.aborted is None and soft._softgrpo.seed == 7 and soft.extra_key == "|softgrpo:a"
    plain = Req("b", None)
    hooks.after_req_init(None, plain)
    assert plain.aborted is None and not hasattr(plain, "_softgrpo") and plain.extra_key is None
    bad = Req("c", {**FLAGS, "seed": 7, "max_topk": 9})
    hooks.after_req_init(None, bad)
    assert "max_topk" in bad.aborted and not hasattr(bad, "_softgrpo")
    pen = Req("d", {**FLAGS, "seed": 7}, frequency_penalty=0.5)
    hooks.after_req_init(None, pen)
    assert "frequency_penalty" in pen.aborted
    server = Req("e", {**FLAGS, "seed": 7, "dirichlet_alpha": 2.0})
    hooks.after_req_init(None, server)
    assert "dirichlet_alpha" in server.aborted and "SOFTGRPO_SGLANG_CONFIG" in server.aborted
    state.refusals = ["enable_mixed_chunk=True (...)"]
    refused = Req("f", {**FLAGS, "seed": 7})
    hooks.after_req_init(None, refused)
    assert "refused on this server" in refused.aborted and "enable_mixed_chunk" in refused.aborted
    with pytest.raises(hooks.SettingsError, match="max_topk"):
        hooks.after_verify(None, SimpleNamespace(**vars(bad.sampling_params)), V)


def test_sample_hook_overrides_soft_rows_only(state) -> None:
    table = SlotTable(state.spec(), rows=9, think_end_width=2)
    runner = SimpleNamespace(_softgrpo_table=table)
    reqs = [Req("s0", {**FLAGS, "seed": 1}, slot=4), Req("d1", None, slot=2), Req("s2", {**FLAGS, "seed": 2}, slot=7)]
    for r in reqs:
        hooks.after_req_init(None, r)
    logits = torch.randn(3, V, generator=torch.Generator().manual_seed(0)) * 3
    seen = {}

    def stock(runner, logits_output, forward_batch):
        seen["logits"] = logits_output.next_token_logits.clone()
        logits_output.next_token_logits.div_(0.5)  # SGLang's sampler scales in place
        logits_output.next_token_logprobs = torch.full((3,), -9.0)
        return torch.tensor([11, 12, 13])

    def batch(decode: bool):
        return SimpleNamespace(rids=[r.rid for r in reqs], forward_mode=SimpleNamespace(is_decode=lambda: decode),
                               req_pool_indices=torch.tensor([r.req_pool_idx for r in reqs]), seq_lens=torch.tensor([9, 5, 6]),
                               req_to_token_pool=SimpleNamespace(req_to_token=torch.zeros(9, 4)), return_logprob=True)

    out_lo = SimpleNamespace(next_token_logits=logits.clone(), next_token_logprobs=None, customized_info=None)
    ids = hooks.around_sample(stock, runner, out_lo, batch(decode=False))  # prefill: admission + first step
    assert torch.equal(seen["logits"], logits)  # the stock sampler still got untouched logits
    ref = SlotTable(state.spec(), rows=9, think_end_width=2)
    ref.admit([4, 2, 7], [reqs[0]._softgrpo, None, reqs[2]._softgrpo])
    step = ref.step(logits, torch.tensor([4, 2, 7]), torch.tensor([9, 5, 6]))
    assert ids.tolist() == [int(step.tokens[0]), 12, int(step.tokens[2])]
    assert out_lo.next_token_logprobs[1] == -9.0 and out_lo.next_token_logprobs[0] == step.logprobs[0]
    rows = out_lo.customized_info[TRACE_KEY]
    assert len(rows) == 3 and decode_rows([rows[0]])["ids"][0, 0] == ids[0]
    assert table.soft_req[[4, 2, 7]].tolist() == [True, False, True] and table.mix_on[2].item() is False
    assert torch.equal(table.ids, ref.ids) and torch.equal(table.w, ref.w)
    # a decode batch without soft requests on a clean table goes straight to the stock sampler
    clean = SimpleNamespace(_softgrpo_table=SlotTable(state.spec(), rows=9, think_end_width=2))
    lo2 = SimpleNamespace(next_token_logits=logits[1:2].clone(), next_token_logprobs=None, customized_info=None)
    fb = SimpleNamespace(rids=["d1"], forward_mode=SimpleNamespace(is_decode=lambda: True))
    assert hooks.around_sample(lambda *a: torch.tensor([5]), clean, lo2, fb).tolist() == [5]
    assert lo2.customized_info is None
