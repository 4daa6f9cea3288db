"""The GPU check's step checks (bench/gpu_check.py): the compiled sample step and the SGLang table step."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import torch

from bench.gpu_check_lib import Ctx, Skipped, check, require, sync_errors, timed

VOCAB = 151_936  # Qwen2/Qwen3 vocabulary


def step_spec(k: int, kinds: Sequence[str] = ("none", "gumbel"), width: int | None = None):
    from soft_thinking.core.batch import BatchSpec
    from soft_thinking.core.config import SoftThinkingConfig

    cfg = SoftThinkingConfig()
    return BatchSpec(k_max=k, width=width or k, kinds=tuple(kinds), params=cfg.noise_params(),
                     opts=cfg.logprob_options())


def _requests(n: int, vocab: int, seed: int = 0) -> list:
    """Soft requests with varied settings (K, filters, gumbel / greedy-none, Cold Stop)."""
    from soft_thinking.core.config import SoftThinkingConfig
    from soft_thinking.engines.sglang.settings import SoftRequest
    from soft_thinking.text import derive_seed

    out = []
    for i in range(n):
        cfg = SoftThinkingConfig(
            max_topk=(4, 8, 16, 32)[i % 4], temperature=(1.0, 0.7, 0.0, 1.0)[i % 4], top_k=(-1, 20, 32, -1)[i % 4],
            top_p=(0.95, 1.0, 0.9, 0.8)[i % 4], after_thinking_top_k=(20, 32, 5, 1)[i % 4],
            think_end_token_ids=(vocab - 2,), early_stopping_entropy_threshold=0.5 if i % 3 == 0 else 0.0,
            early_stopping_length_threshold=4)
        out.append(SoftRequest(cfg.validate(vocab_size=vocab), derive_seed("gpu-check", seed, i)))
    return out


def _step_inputs(ctx: Ctx, b: int, vocab: int, k: int):
    from soft_thinking.engines.sglang.table import SlotTable

    table = SlotTable(step_spec(k), rows=b + 1, device=ctx.device)
    table.admit(list(range(1, b + 1)), _requests(b, vocab))
    slots = torch.arange(1, b + 1, device=ctx.device)
    return table.phase.select(slots), table.settings.select(slots), table.seed[slots], table


def _compare(got, ref, numbers: dict[str, Any], tol: float = 1e-5) -> bool:
    ok = True
    for name in ("tokens", "ids", "soft", "n_kept", "answer", "truncated", "forced"):
        same = torch.equal(getattr(got, name), getattr(ref, name))
        ok &= same
        if not same:
            numbers.setdefault("unequal", []).append(name)
    for name in ("q", "weights", "logprobs", "entropy"):
        d = float((getattr(got, name).double() - getattr(ref, name).double()).abs().max())
        numbers[f"max_abs_diff_{name}"] = max(d, numbers.get(f"max_abs_diff_{name}", 0.0))
        ok &= d <= tol
    return ok


def _compiled_step(ctx: Ctx, mode: str | None) -> dict[str, Any]:
    import torch._dynamo

    from soft_thinking.core.batch import sample_step

    b, vocab, k = (16, 4096, 32) if ctx.quick else (64, VOCAB, 32)
    phase, rows, seed, table = _step_inputs(ctx, b, vocab, k)
    spec = table.spec
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # graphs are counted per check
    fn = torch.compile(sample_step, fullgraph=True, dynamic=False, mode=mode, backend=ctx.backend)
    g = torch.Generator(device=ctx.device).manual_seed(0)
    logits = [torch.randn(b, vocab, generator=g, device=ctx.device) * 4 for _ in range(4)]
    pos = torch.arange(b, device=ctx.device) + 100
    t0 = time.perf_counter()
    for _ in range(3):  # compile, then CUDA-graph warm-up and recording (may synchronise): not checked
        fn(logits[0], phase, rows, seed, pos, spec)
    ctx.sync()
    numbers: dict[str, Any] = {"batch": b, "vocab": vocab, "k": k, "mode": mode or "default",
                               "compile_s": time.perf_counter() - t0}
    ok, state_e, state_c = True, phase, phase
    with torch._dynamo.config.patch(error_on_recompile=True):
        for t, z in enumerate(logits):
            ref, state_e = sample_step(z, state_e, rows, seed, pos + t, spec)
            with sync_errors(ctx):
                got, state_c = fn(z, state_c, rows, seed, pos + t, spec)
                got = type(got)(**{f.name: getattr(got, f.name).clone() for f in fields(got)})  # cudagraph outputs
            ok &= _compare(got, ref, numbers)
            ok &= bool(torch.equal(state_e.thinking, state_c.thinking))
        numbers["eager_ms"] = timed(ctx, lambda: sample_step(logits[0], phase, rows, seed, pos, spec), 10)
        numbers["compiled_ms"] = timed(ctx, lambda: fn(logits[0], phase, rows, seed, pos, spec), 10)
    numbers["graphs"] = int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    require(ok and numbers["graphs"] == 1, "compiled step differs from eager or recompiled", numbers)
    return numbers


@check
def compiled_step(ctx: Ctx) -> dict[str, Any]:
    return _compiled_step(ctx, None)


@check
def cudagraph_step(ctx: Ctx) -> dict[str, Any]:
    if not ctx.cuda:
        raise Skipped("CUDA graphs need a CUDA device")
    return _compiled_step(ctx, "reduce-overhead")


def plain_sampler(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """A stock sampler step: softmax(z / T), top-p over the sorted probabilities, multinomial."""
    probs = torch.softmax(logits / temperature.unsqueeze(-1), dim=-1)
    sorted_p, idx = probs.sort(dim=-1, descending=True)
    cum = sorted_p.cumsum(-1)
    sorted_p = sorted_p.masked_fill(cum - sorted_p > top_p.unsqueeze(-1), 0.0)
    pick = torch.multinomial(sorted_p / sorted_p.sum(-1, keepdim=True), 1)
    return idx.gather(-1, pick).squeeze(-1)


@check
def sglang_table_step(ctx: Ctx) -> dict[str, Any]:
    """The plug-in's slot-table step (compiled per batch bucket, as ``SlotTable(compile_step=True)``) and
    trace packing at a full bucket and a padded batch: equal to the eager table, sync-free, timed."""
    import torch._dynamo

    from soft_thinking.engines.sglang.codec import pack_rows
    from soft_thinking.engines.sglang.table import SlotTable

    b, vocab, k = (16, 4096, 32) if ctx.quick else (64, VOCAB, 32)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # graphs are counted per check
    tables = [SlotTable(step_spec(k), rows=b + 1, device=ctx.device, compile_step=c, compile_backend=ctx.backend)
              for c in (False, True)]
    for table in tables:
        table.admit(list(range(1, b + 1)), _requests(b, vocab))
    g = torch.Generator(device=ctx.device).manual_seed(1)
    numbers: dict[str, Any] = {"batch": b, "vocab": vocab, "k": k}
    ok = True
    for n in (b, b - b // 4):  # a full bucket, then a batch padded to it (padding rows -> slot 0)
        slots = torch.randperm(b, generator=g, device=ctx.device)[:n] + 1  # SGLang's row order is not slot order
        for t in range(3):
            logits = torch.randn(n, vocab, generator=g, device=ctx.device) * 4
            lens = torch.arange(n, device=ctx.device) + 50 + t
            if t == 0 and n == b:
                t0 = time.perf_counter()
                tables[1].step(logits, slots, lens)  # compile (state advanced: redo it on the eager table)
                ctx.sync()
                numbers["compile_s"] = time.perf_counter() - t0
                tables[0].step(logits, slots, lens)
                continue
            ref = pack_rows(tables[0].step(logits, slots, lens))
            with sync_errors(ctx), torch._dynamo.config.patch(error_on_recompile=True):
                got = pack_rows(tables[1].step(logits, slots, lens))
            ok &= bool(torch.equal(got[:, : 4 * k], ref[:, : 4 * k]))  # candidate ids
            numbers["packed_row_bytes"] = int(got.shape[1])
    ok &= bool(torch.equal(tables[0].ids, tables[1].ids) and torch.equal(tables[0].mix_on, tables[1].mix_on))
    numbers["max_abs_diff_w"] = float((tables[0].w - tables[1].w).abs().max())
    ok &= numbers["max_abs_diff_w"] <= 1e-5
    slots = torch.arange(1, b + 1, device=ctx.device)
    logits = torch.randn(b, vocab, generator=g, device=ctx.device) * 4
    lens = torch.arange(b, device=ctx.device) + 99
    temperature, top_p = torch.ones(b, device=ctx.device), torch.full((b,), 0.95, device=ctx.device)
    numbers["eager_ms"] = timed(ctx, lambda: pack_rows(tables[0].step(logits, slots, lens)), 10)
    numbers["compiled_ms"] = timed(ctx, lambda: pack_rows(tables[1].step(logits, slots, lens)), 10)
    numbers["plain_sampler_ms"] = timed(ctx, lambda: plain_sampler(logits, temperature, top_p), 10)
    numbers["compiled_over_plain"] = numbers["compiled_ms"] / numbers["plain_sampler_ms"]
    numbers["eager_over_plain"] = numbers["eager_ms"] / numbers["plain_sampler_ms"]
    numbers["graphs"] = int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    require(ok and numbers["graphs"] == 1, "compiled table step differs from the eager table or recompiled", numbers)
    return numbers
