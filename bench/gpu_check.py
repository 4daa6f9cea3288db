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
``train_cli_resume`` ``python -m softgrpo.train`` on the device (fp32): 2 steps and a checkpoint, then the
                     same command with 3 steps resumes from it; replay parity <= 1e-4, PPO ratio exactly 1

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
from pathlib import Path
from typing import Any

import torch

from bench import gpu_check_steps, gpu_check_train  # noqa: F401  (they register their checks)
from bench.gpu_check_lib import CHECKS, CheckFailed, Ctx, Skipped, check, require

__all__ = ["CHECKS", "ORDER", "CheckFailed", "Skipped", "main", "run_checks"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "results" / "gpu_check.json"


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
    spec = gpu_check_steps.step_spec(k=32, kinds=NOISE_KINDS)
    a = counter_step_uniforms(seeds, pos, spec)
    b = counter_step_uniforms(seeds.to(ctx.device), pos.to(ctx.device), spec)
    layout_bad = sum(int((a.noise[k] != b.noise[k].cpu()).sum()) for k in a.noise) + int((a.sample != b.sample.cpu()).sum())
    numbers = {"values": cpu.numel(), "mismatches": int((cpu != dev).sum()), "step_layout_mismatches": layout_bad,
               "known_answer": kat_ok}
    require(kat_ok and numbers["mismatches"] == 0 and layout_bad == 0, "device bits differ from the CPU", numbers)
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
ORDER = ("rng_bits", "hf_bf16_vs_fp32", "trainer_update_bf16", "train_cli_resume", "compiled_step", "sglang_table_step",
         "cudagraph_step")


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
    p.add_argument("--backend", default=None, choices=("inductor", "eager", "aot_eager"),
                   help="torch.compile backend (default: inductor; eager for --device cpu --quick)")
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
    ctx = Ctx(torch.device(args.device), args.quick, args.backend)
    meta = {"timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
            "python": platform.python_version(), "device": args.device, "quick": args.quick,
            "gpu": torch.cuda.get_device_name(0) if ctx.cuda else None, "compile_backend": ctx.backend}
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
