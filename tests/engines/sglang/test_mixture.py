"""The in-graph soft input: inactive rows bitwise E[input_ids], active rows == core.mix_embeddings, a 2-shard
vocab-parallel embedding == unsharded, sync-free under torch.compile(fullgraph=True), the forward wrapper."""

import inspect
from types import SimpleNamespace

import torch
from sync_free import assert_sync_free  # tests/sync_free.py

from soft_thinking.core.mixture import mix_embeddings
from soft_thinking.engines.sglang.mixture import mixed_input_embeds, wrap_forward

V, D, B, K = 50, 12, 6, 4


def case(dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(0)
    e = torch.randn(V, D, generator=g).to(dtype)
    input_ids = torch.randint(0, V, (B,), generator=g)
    ids = torch.randint(0, V, (B, K), generator=g)
    w = torch.rand(B, K, generator=g)
    w[1] = 0.0  # an inactive row whose table row was never written
    mix_on = torch.tensor([True, False, True, False, True, True])
    return e, input_ids, ids, w, mix_on


class ShardedEmbedding:
    """A fake VocabParallelEmbedding over ``n`` shards: mask ids outside each shard, look up, zero, sum (all-reduce)."""

    def __init__(self, weight: torch.Tensor, n: int) -> None:
        edges = [len(s) for s in torch.tensor_split(torch.arange(weight.shape[0]), n)]
        starts = [sum(edges[:i]) for i in range(n)]
        self.bounds = [(lo, lo + size) for lo, size in zip(starts, edges)]  # Python ints: no sync when called
        self.weight = weight

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        total = None
        for lo, hi in self.bounds:
            inside = (ids >= lo) & (ids < hi)
            local = torch.nn.functional.embedding((ids - lo) * inside, self.weight[lo:hi])
            part = local * inside.unsqueeze(-1).to(local.dtype)
            total = part if total is None else total + part
        return total


def test_inactive_rows_are_bitwise_token_embeddings_and_active_rows_match_the_core() -> None:
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        e, input_ids, ids, w, mix_on = case(dtype)
        out = mixed_input_embeds(torch.nn.Embedding.from_pretrained(e), input_ids, ids, w, mix_on)
        assert out.dtype == dtype and torch.isfinite(out).all()
        assert torch.equal(out[~mix_on], e[input_ids[~mix_on]])
        assert torch.equal(out[mix_on], mix_embeddings(e, ids[mix_on], w[mix_on]))


def test_two_shard_vocab_parallel_embedding_equals_unsharded() -> None:
    e, input_ids, ids, w, mix_on = case()
    full = mixed_input_embeds(lambda x: torch.nn.functional.embedding(x, e), input_ids, ids, w, mix_on)
    for n in (2, 3):
        assert torch.equal(mixed_input_embeds(ShardedEmbedding(e, n), input_ids, ids, w, mix_on), full)


def test_mixture_is_sync_free_under_fullgraph() -> None:
    e, input_ids, ids, w, mix_on = case()
    table = SimpleNamespace(ids=torch.zeros(9, K, dtype=torch.long), w=torch.zeros(9, K), mix_on=torch.zeros(9, dtype=torch.bool))
    rows = torch.tensor([3, 1, 8, 2, 5, 7])
    table.ids[rows], table.w[rows], table.mix_on[rows] = ids, w, mix_on

    def fn(input_ids, rows):
        return mixed_input_embeds(ShardedEmbedding(e, 2), input_ids, table.ids[rows], table.w[rows], table.mix_on[rows])

    out = assert_sync_free(fn, input_ids, rows)
    assert torch.equal(out, fn(input_ids, rows))


class FakeModel(torch.nn.Module):
    """Stands for Qwen2ForCausalLM.forward's contract: uses input_embeds when given, else embeds input_ids."""

    def __init__(self, e: torch.Tensor) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding.from_pretrained(e)

    def forward(self, input_ids, positions, forward_batch, input_embeds=None, get_embedding=False, pp_proxy_tensors=None):
        return self.embed(input_ids) if input_embeds is None else input_embeds


def test_forward_wrapper_feeds_decode_only_and_keeps_the_signature() -> None:
    e, input_ids, ids, w, mix_on = case()
    model = FakeModel(e)
    sig = inspect.signature(model.forward)
    table = SimpleNamespace(ids=torch.zeros(9, K, dtype=torch.long), w=torch.zeros(9, K), mix_on=torch.zeros(9, dtype=torch.bool))
    rows = torch.arange(1, B + 1)
    table.ids[rows], table.w[rows], table.mix_on[rows] = ids, w, mix_on
    wrap_forward(model, table, model.embed)
    assert inspect.signature(model.forward) == sig and "pp_proxy_tensors" in inspect.signature(model.forward).parameters

    def batch(decode: bool):
        return SimpleNamespace(forward_mode=SimpleNamespace(is_decode=lambda: decode), req_pool_indices=rows)

    out = model.forward(input_ids, None, batch(True))
    assert torch.equal(out, mixed_input_embeds(model.embed, input_ids, ids, w, mix_on))
    assert torch.equal(model.forward(input_ids, None, batch(False)), e[input_ids])  # extend: unchanged
    given = torch.ones(B, D)
    assert torch.equal(model.forward(input_ids, None, batch(True), input_embeds=given), given)
