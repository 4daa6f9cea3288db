"""One-GPU check of the sample step, the engines and one trainer update (``scripts/gpu_check.sh``).

Run from the repository root on a machine with one CUDA GPU (torch + transformers; no sglang,
verl, ray or internet needed)::

    scripts/gpu_check.sh                               # = python -m bench.gpu_check --device cuda
    python -m bench.gpu_check --device cpu --quick     # the plumbing, on a CPU (small sizes)

Checks (each records ``status`` pass / fail / error / skip, its numbers and its wall time; a
failing check never stops the others; exit status 1 if any check failed or errored):

``rng_bits``         counter-RNG words and uniforms on the device == on the CPU, bit for bit
                     (Random123 known answers, 36 streams x 64 candidates x 256 keys, the step layout)
``compiled_step``    ``torch.compile(sample_step, fullgraph=True)`` at a batch bucket: equals the
                     eager step (integers exactly, floats within 1e-5), no recompile across steps,
                     no host sync (``torch.cuda.set_sync_debug_mode("error")``); times both
``cudagraph_step``   the same with ``mode="reduce-overhead"`` (CUDA graphs; skipped on a CPU)
``sglang_table_step`` the SGLang plug-in's slot-table step + trace packing (engines/sglang/table.py,
                     without sglang) at batch 64, vocabulary 151,936, eager and compiled, timed
                     against a plain sampler step (softmax, top-p, multinomial)
``hf_bf16_vs_fp32``  reference-engine soft decoding of a tiny random Qwen2 in fp32 and bf16:
                     replay parity of each (<= 1e-4 fp32, <= 0.02 bf16), tokens agreeing
``trainer_update_bf16`` one reference-trainer step (rollout, replay, PPO update) in bf16:
                     replay parity <= 0.01, finite gradient norm

Results go to ``bench/results/gpu_check.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "results" / "gpu_check.json"
VOCAB = 151_936  # Qwen2/Qwen3 vocabulary


class CheckFailed(AssertionError):
    """A check ran and its numbers miss a bound: ``numbers`` are still recorded."""

    def __init__(self, message: str, numbers: dict[str, Any]) -> None:
        super().__init__(message)
        self.numbers = numbers


class Skipped(Exception):
    """The check does not apply on this device."""


@dataclass
class Ctx:
    device: torch.device
    quick: bool  # small sizes (the CPU plumbing run)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def backend(self) -> str:
        return "eager" if self.quick and not self.cuda else "inductor"  # CPU plumbing: trace, no C++ build

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)


CHECKS: dict[str, Callable[[Ctx], dict[str, Any]]] = {}


def check(fn: Callable[[Ctx], dict[str, Any]]) -> Callable[[Ctx], dict[str, Any]]:
    CHECKS[fn.__name__] = fn
    return fn


def require(ok: bool, message: str, numbers: dict[str, Any]) -> None:
    if not ok:
        raise CheckFailed(message, numbers)


def timed(ctx: Ctx, fn: Callable[[], Any], repeats: int) -> float:
    """Median milliseconds of ``fn`` (device-synchronised)."""
    out = []
    for _ in range(repeats):
        ctx.sync()
        t0 = time.perf_counter()
        fn()
        ctx.sync()
        out.append(1000 * (time.perf_counter() - t0))
    return sorted(out)[len(out) // 2]


class sync_errors:
    """``torch.cuda.set_sync_debug_mode("error")`` inside (a no-op on a CPU)."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def __enter__(self) -> None:
        if self.ctx.cuda:
            self.prev = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("error")

    def __exit__(self, *exc: object) -> None:
        if self.ctx.cuda:
            torch.cuda.set_sync_debug_mode(self.prev)


# ------------------------------------------------------------------------------------------------
@check
def rng_bits(ctx: Ctx) -> dict[str, Any]:
    from soft_thinking.core.batch import counter_step_uniforms
    from soft_thinking.core.noise import NOISE_KINDS
    from soft_thinking.core.rng import counter_uniforms, philox4x32
    from soft_thinking.text import derive_seed

    kat = philox4x32(tuple(torch.tensor(0xFFFFFFFF, device=ctx.device) for _ in range(4)),
                     tuple(torch.tensor(0xFFFFFFFF, device=ctx.device) for _ in range(2)))
    kat_ok = [int(w) for w in kat] == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]
    n = 32 if ctx.quick else 256
    seeds = torch.tensor([derive_seed("gpu-check", i) for i in range(n)])
    pos = torch.arange(n) * 997 + 3
    cpu = counter_uniforms(seeds, pos, 64, range(36))
    dev = counter_uniforms(seeds.to(ctx.device), pos.to(ctx.device), 64, range(36)).cpu()
    spec = _spec(k=32, kinds=NOISE_KINDS)
    a = counter_step_uniforms(seeds, pos, spec)
    b = counter_step_uniforms(seeds.to(ctx.device), pos.to(ctx.device), spec)
    layout_bad = sum(int((a.noise[k] != b.noise[k].cpu()).sum()) for k in a.noise) + int((a.sample != b.sample.cpu()).sum())
    numbers = {"values": cpu.numel(), "mismatches": int((cpu != dev).sum()), "step_layout_mismatches": layout_bad,
               "known_answer": kat_ok}
    require(kat_ok and numbers["mismatches"] == 0 and layout_bad == 0, "device bits differ from the CPU", numbers)
    return numbers


def _spec(k: int, kinds: Sequence[str] = ("none", "gumbel"), width: int | None = None):
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

    table = SlotTable(_spec(k), rows=b + 1, device=ctx.device)
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
    fn = torch.compile(sample_step, fullgraph=True, dynamic=False, mode=mode, backend=ctx.backend)
    g = torch.Generator(device=ctx.device).manual_seed(0)
    logits = [torch.randn(b, vocab, generator=g, device=ctx.device) * 4 for _ in range(4)]
    pos = torch.arange(b, device=ctx.device) + 100
    t0 = time.perf_counter()
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
    import torch._dynamo

    from soft_thinking.engines.sglang.codec import pack_rows

    b, vocab, k = (16, 4096, 32) if ctx.quick else (64, VOCAB, 32)
    _, _, _, table = _step_inputs(ctx, b, vocab, k)
    slots = torch.arange(1, b + 1, device=ctx.device).flip(0)  # SGLang's row order is not the slot order
    logits = torch.randn(b, vocab, device=ctx.device) * 4
    seq_lens = torch.arange(b, device=ctx.device) + 50

    def hook(z: torch.Tensor, s: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        step = table.step(z, s, lens)
        return torch.cat([step.tokens.view(-1, 1), pack_rows(step).to(torch.int64)], dim=1)

    torch._dynamo.reset()
    compiled = torch.compile(hook, fullgraph=True, dynamic=False, backend=ctx.backend)
    saved = [t.clone() for t in (table.ids, table.w, table.mix_on, table.phase.window)]
    t0 = time.perf_counter()
    first = compiled(logits, slots, seq_lens)
    compile_s = time.perf_counter() - t0
    for dst, src in zip((table.ids, table.w, table.mix_on, table.phase.window), saved):
        dst.copy_(src)
    with sync_errors(ctx):
        eager = hook(logits, slots, seq_lens)
    temperature, top_p = torch.ones(b, device=ctx.device), torch.full((b,), 0.95, device=ctx.device)
    numbers: dict[str, Any] = {
        "batch": b, "vocab": vocab, "k": k, "compile_s": compile_s,
        "eager_ms": timed(ctx, lambda: hook(logits, slots, seq_lens), 10),
        "compiled_ms": timed(ctx, lambda: compiled(logits, slots, seq_lens), 10),
        "plain_sampler_ms": timed(ctx, lambda: plain_sampler(logits, temperature, top_p), 10),
        "packed_row_bytes": int(pack_rows(table.step(logits, slots, seq_lens)).shape[1]),
    }
    numbers["compiled_over_plain"] = numbers["compiled_ms"] / numbers["plain_sampler_ms"]
    numbers["eager_over_plain"] = numbers["eager_ms"] / numbers["plain_sampler_ms"]
    tokens = eager[:, 0]
    require(torch.equal(first[:, 0], tokens) and bool(((tokens >= 0) & (tokens < vocab)).all()),
            "compiled table step differs from eager or emitted an invalid token", numbers)
    return numbers


def _parity(model: Any, engine: Any, samples: list, opts: Any) -> float:
    from soft_thinking.engines.hf.replay import replay_logprobs

    lp, batch = replay_logprobs(model, [s.prompt_ids for s in samples], [s.trace for s in samples], opts,
                                pad_id=engine.pad_id)
    return float((lp.detach().float() - batch.logprobs.to(lp.device)).abs()[batch.mask.to(lp.device)].max())


@check
def hf_bf16_vs_fp32(ctx: Ctx) -> dict[str, Any]:
    import copy

    from soft_thinking.core.config import SoftThinkingConfig
    from soft_thinking.engines.hf.engine import SoftThinkingEngine
    from soft_thinking.engines.hf.tiny import tiny_model_and_tokenizer

    model, tok = tiny_model_and_tokenizer("qwen2")
    cfg = SoftThinkingConfig(think_end_token_ids=(5,), temperature=1.0, top_p=0.95, top_k=5, max_topk=5)
    prompts = ["What is 2+3?", "hi", "Compute 12*7 step by step.", "abc"]
    numbers: dict[str, Any] = {}
    tokens = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        engine = SoftThinkingEngine(copy.deepcopy(model), tok, device=ctx.device, dtype=dtype)
        t0 = time.perf_counter()
        samples = engine.generate(prompts, cfg, n=2, max_new_tokens=8 if ctx.quick else 32, seed=21)
        numbers[f"{name}_generate_s"] = time.perf_counter() - t0
        numbers[f"{name}_parity"] = _parity(engine.model, engine, samples, cfg.logprob_options())
        numbers[f"{name}_finite"] = all(bool(torch.isfinite(s.trace.logprobs).all()) for s in samples)
        tokens[name] = [s.token_ids for s in samples]
    numbers["same_tokens_share"] = sum(a == b for a, b in zip(tokens["fp32"], tokens["bf16"])) / len(tokens["fp32"])
    require(numbers["fp32_parity"] <= 1e-4 and numbers["bf16_parity"] <= 0.02 and numbers["fp32_finite"]
            and numbers["bf16_finite"], "replay parity out of bounds", numbers)
    return numbers


@check
def trainer_update_bf16(ctx: Ctx) -> dict[str, Any]:
    from soft_thinking.engines.hf.tiny import tiny_model_and_tokenizer
    from softgrpo.config import load_config
    from softgrpo.reference.trainer import Trainer

    overrides = [
        "data.train_files=builtin:arithmetic", "data.train_size=16", "data.train_batch_size=4",
        f"data.max_response_length={8 if ctx.quick else 32}", "data.apply_chat_template=false",
        "actor_rollout_ref.rollout.n=4", "actor_rollout_ref.actor.ppo_mini_batch_size=2",
        "actor_rollout_ref.actor.ppo_micro_batch_size=4", "actor_rollout_ref.actor.optim.lr=1e-3",
        f"custom_reward_function.path={ROOT / 'tests' / 'softgrpo' / 'trainer_rewards.py'}",
        "custom_reward_function.name=digit_share", "trainer.logger=[jsonl]", "trainer.progress=false",
        "trainer.save_freq=0", "trainer.total_training_steps=1", "trainer.arm=softgrpo",
        f"trainer.device={ctx.device}", "actor_rollout_ref.model.dtype=bfloat16",
        "soft_thinking.gumbel_softmax_temperature=0.5",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        model, tok = tiny_model_and_tokenizer("qwen2")
        t0 = time.perf_counter()
        tr = Trainer(load_config(None, [*overrides, f"trainer.default_local_dir={tmp}"]), model=model, tokenizer=tok)
        try:
            m = tr.train()
        finally:
            tr.close()
    numbers = {"replay_parity": m["replay/max_abs_diff"], "grad_norm": m["actor/grad_norm"],
               "soft_step_share": m.get("soft/step_share"), "wall_s": time.perf_counter() - t0,
               "dtype": str(next(tr.model.parameters()).dtype)}
    require(numbers["replay_parity"] <= 0.01 and numbers["grad_norm"] == numbers["grad_norm"]
            and numbers["grad_norm"] < float("inf") and numbers["dtype"] == "torch.bfloat16",
            "bf16 update: replay parity > 0.01 or a non-finite gradient", numbers)
    return numbers


# cheap checks first: a run cut short by the time limit keeps the most
ORDER = ("rng_bits", "hf_bf16_vs_fp32", "trainer_update_bf16", "compiled_step", "sglang_table_step", "cudagraph_step")


# ------------------------------------------------------------------------------------------------
def run_checks(ctx: Ctx, names: Sequence[str],
               after_each: Callable[[dict[str, dict[str, Any]]], None] = lambda r: None) -> dict[str, dict[str, Any]]:
    """Run ``names`` in order; each records its status, numbers and wall time, whatever the others do.

    ``after_each(results so far)`` runs after every check (the report is rewritten, so a run stopped
    by a time limit keeps what finished).
    """
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        t0 = time.perf_counter()
        rec: dict[str, Any]
        try:
            rec = {"status": "pass", "numbers": CHECKS[name](ctx)}
        except Skipped as exc:
            rec = {"status": "skip", "reason": str(exc)}
        except CheckFailed as exc:
            rec = {"status": "fail", "error": str(exc), "numbers": exc.numbers}
        except Exception as exc:  # recorded, never hidden: the run reports it and exits non-zero
            rec = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:2000],
                   "traceback": traceback.format_exc()[-4000:]}
        rec["wall_s"] = time.perf_counter() - t0
        results[name] = rec
        after_each(results)
        print(f"  {name:22s} {rec['status']:5s} {rec['wall_s']:7.1f} s  {rec.get('error', '')[:160]}", flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (the real check) or cpu (the plumbing)")
    p.add_argument("--quick", action="store_true", help="small sizes (vocabulary 4096, batch 16, short decodes)")
    p.add_argument("--only", default="", help=f"comma-separated subset of {','.join(CHECKS)}")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    args = p.parse_args(argv)
    if args.device not in ("cuda", "cpu"):
        print(f"error: --device={args.device!r}: allowed 'cuda' or 'cpu'", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device=cuda but torch sees no CUDA device (for the CPU plumbing run: --device cpu --quick)",
              file=sys.stderr)
        return 2
    names = [n for n in args.only.split(",") if n] or list(ORDER)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        print(f"error: --only: unknown check(s) {unknown}; allowed {list(CHECKS)}", file=sys.stderr)
        return 2
    ctx = Ctx(torch.device(args.device), args.quick)
    meta = {"timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
            "python": platform.python_version(), "device": args.device, "quick": args.quick,
            "gpu": torch.cuda.get_device_name(0) if ctx.cuda else None}
    print(f"gpu check on {meta['gpu'] or 'cpu'} (torch {torch.__version__}, quick={args.quick})", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def write(results: dict[str, dict[str, Any]], done: bool = False) -> list[str]:
        failed = [n for n, r in results.items() if r["status"] in ("fail", "error")]
        meta["wall_s"] = time.perf_counter() - t0
        report = {"meta": meta, "checks": results, "failed": failed, "complete": done,
                  "not_run": [n for n in names if n not in results], "ok": done and not failed}
        out.write_text(json.dumps(report, indent=1, default=str) + "\n")
        return failed

    failed = write(run_checks(ctx, names, write), done=True)
    print(f"{'ok' if not failed else 'FAILED: ' + ', '.join(failed)}; wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
