"""Where the embedded default's wall time goes: each stage timed in pieces, scaled to the full default.

    python -m bench.quickstart_profile [--seed 0] [--sft-steps 20] [--rl-steps 6] [--eval-problems 25]
                                       [--arms grpo softgrpo] [--out bench/results/quickstart_profile.json]

One process, one thread per stage piece except the warm start (``--threads``, the quickstart's 2):

* warm start: ``--sft-steps`` SFT steps of a fresh seed model (batch building, forward, backward,
  clip + AdamW) and one held-out greedy check (100 problems); scaled to ``--full-sft-steps``
  (the README's seed 0: 525 steps, a check every 25);
* each RL arm: ``--rl-steps`` trainer steps from the warm start (rollout split into model forward,
  sample step, trace recording and the rest of the decode loop; reward; old + reference
  log-probs; the PPO update), scaled to ``trainer.total_training_steps``;
* each evaluation: ``--eval-problems`` problems x the default's 8 samples per inference mode (generation and
  grading), scaled to the default 200 problems.

Timings under load give shares, not absolute seconds; the JSON says how loaded the machine was
(``os.getloadavg`` before and after).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from soft_thinking.engines.hf import engine as engine_mod
from soft_thinking.io import atomic_write_json

OUT = Path(__file__).resolve().parent / "results" / "quickstart_profile.json"


class Clock:
    """Seconds per label; ``scope`` prefixes the labels of the hooks below (one stage at a time)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.scope = "idle"
        self.generating = False

    @contextlib.contextmanager
    def time(self, label: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[f"{self.scope}/{label}"] += time.perf_counter() - t0

    def wrap(self, fn: Any, label: str, first: bool = False) -> Any:
        """``fn`` timed under ``label``; with ``first`` its first call (a worker pool's start-up) goes to
        ``<label>_first_call``, which the projection does not scale."""
        calls = [0]

        def timed(*a: Any, **k: Any) -> Any:
            calls[0] += 1
            with self.time(f"{label}_first_call" if first and calls[0] == 1 else label):
                return fn(*a, **k)
        return timed


def instrument_engine(clock: Clock) -> None:
    """Time the decode loop's pieces in every engine of this process (model forward is hooked per model)."""
    engine_mod.BatchStepper.__call__ = clock.wrap(engine_mod.BatchStepper.__call__, "decode/sample_step")
    engine_mod.TraceRecorder.record = clock.wrap(engine_mod.TraceRecorder.record, "decode/record")
    engine_mod.mix_embeddings = clock.wrap(engine_mod.mix_embeddings, "decode/mix_embeddings")
    init = engine_mod.SoftThinkingEngine.__init__

    def hooked_init(self: Any, model: Any, *a: Any, **k: Any) -> None:
        init(self, model, *a, **k)
        if not getattr(model, "_profile_hooked", False):
            starts: list[float] = []
            model.register_forward_pre_hook(lambda *_: starts.append(time.perf_counter()))

            def post(*_: Any) -> None:
                label = "decode/model_forward" if clock.generating else "model_forward_outside_generate"
                clock.seconds[f"{clock.scope}/{label}"] += time.perf_counter() - starts.pop()
            model.register_forward_hook(post)
            model._profile_hooked = True
    engine_mod.SoftThinkingEngine.__init__ = hooked_init
    generate = clock.wrap(engine_mod.SoftThinkingEngine.generate, "generate")

    def flagged_generate(*a: Any, **k: Any) -> Any:
        clock.generating = True
        try:
            return generate(*a, **k)
        finally:
            clock.generating = False
    engine_mod.SoftThinkingEngine.generate = flagged_generate


def profile_warm_start(clock: Clock, args: argparse.Namespace, qs: Any) -> dict[str, Any]:
    from soft_thinking.engines.hf.tiny import tiny_model_and_tokenizer
    from softgrpo.quickstart.pipeline import MODEL_SHAPE, held_out_rows
    from softgrpo.reference.sft import SFTConfig, _batch, _encode, greedy_accuracy, lr_at
    from softgrpo.rewards import RewardScorer
    from softgrpo.tasks.arithmetic import make_dataset

    torch.set_num_threads(args.threads)
    clock.scope = "warm_start"
    cfg = SFTConfig()
    model, tok = tiny_model_and_tokenizer("qwen2", seed=args.seed, **MODEL_SHAPE)
    pairs = _encode(tok, make_dataset("train", 20000, seed=args.seed), False)
    rng = random.Random(f"softgrpo-sft:{args.seed}")
    opt = torch.optim.AdamW(model.parameters(), lr=lr_at(1, cfg), betas=cfg.betas, weight_decay=cfg.weight_decay)
    for step in range(1, args.sft_steps + 1):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        with clock.time("sft_step/batch"):
            ids, labels, mask = _batch(rng.sample(pairs, cfg.batch_size), tok.pad_token_id, torch.device("cpu"))
        model.train()
        with clock.time("sft_step/forward"):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        with clock.time("sft_step/backward"):
            opt.zero_grad(set_to_none=True)
            loss.backward()
        with clock.time("sft_step/clip_adamw"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
    model.eval()
    _, sft_val = held_out_rows(qs, args.seed)
    scorer = RewardScorer(workers=1)
    try:
        with clock.time("grader_startup_first_call"):  # the real warm start starts its grader once
            scorer("arithmetic", ["1"], ["1"])
        with clock.time("greedy_check"):
            greedy_accuracy(engine_mod.SoftThinkingEngine(model, tok), sft_val,
                            lambda t, a: scorer("arithmetic", t, a), cfg.max_new_tokens, False)
    finally:
        scorer.close()
    return {"model": model, "tokenizer": tok}


def profile_arm(clock: Clock, args: argparse.Namespace, qs: Any, arm: str, start: Path, work: Path) -> int:
    from softgrpo.quickstart.pipeline import _load_model, _load_tokenizer
    from softgrpo.reference.trainer import Trainer

    torch.set_num_threads(1)
    clock.scope = f"arm_{arm}"
    cfg = qs.load_arm_config(args.seed, arm, work)
    trainer = Trainer(cfg, model=_load_model(start), tokenizer=_load_tokenizer(start))
    scorer = trainer.scorer
    trainer.scorer = clock.wrap(scorer, "reward", first=True)
    trainer.scorer.counts = scorer.counts  # type: ignore[attr-defined]
    log_probs = trainer._log_probs

    def timed_log_probs(*a: Any, **k: Any) -> Any:
        label = "update/logprob_forward_grad" if torch.is_grad_enabled() else "update/old_ref_logprobs"
        with clock.time(label):
            return log_probs(*a, **k)
    trainer._log_probs = timed_log_probs  # type: ignore[method-assign]
    trainer.rollout = clock.wrap(trainer.rollout, "rollout")  # type: ignore[method-assign]
    trainer.update = clock.wrap(trainer.update, "update")  # type: ignore[method-assign]
    try:
        for _ in range(args.rl_steps):
            trainer.train_step()
    finally:
        trainer.scorer = scorer
        trainer.close()
    return cfg.trainer.total_training_steps


def profile_eval(clock: Clock, args: argparse.Namespace, qs: Any, start: Path, work: Path) -> None:
    import dataclasses

    from softgrpo.quickstart import pipeline
    from softgrpo.quickstart.pipeline import evaluate_checkpoint

    torch.set_num_threads(1)
    clock.scope = "eval"
    pipeline.grade_completions = clock.wrap(pipeline.grade_completions, "grade", first=True)
    pipeline._load_model = clock.wrap(pipeline._load_model, "load_model_first_call", first=False)
    small = dataclasses.replace(qs, eval_problems=args.eval_problems, out=str(work))
    (work / f"seed{args.seed}").mkdir(parents=True, exist_ok=True)
    link = work / f"seed{args.seed}" / "start"
    if not link.exists():
        link.symlink_to(start.resolve())
    with clock.time("checkpoint_total"):
        evaluate_checkpoint(small, args.seed, "start")


def main(argv: list[str] | None = None) -> int:
    from softgrpo.quickstart.pipeline import ARMS, DEFAULT_ARMS, QuickstartArgs
    from softgrpo.reference.sft import SFTConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="threads of the warm-start piece (the quickstart's)")
    p.add_argument("--sft-steps", type=int, default=20)
    p.add_argument("--full-sft-steps", type=int, default=525, help="README seed 0: 525 steps, 21 checks")
    p.add_argument("--rl-steps", type=int, default=6)
    p.add_argument("--eval-problems", type=int, default=25)
    p.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS), choices=list(ARMS))
    p.add_argument("--start", type=Path, default=None,
                   help="a finished warm start (<out>/seed<S>/start) for the arms and the evaluation; default: "
                        "the profile's own --sft-steps model (its samples run longer than a real start's)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    for name in ("sft_steps", "full_sft_steps", "rl_steps", "eval_problems", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    load_before = os.getloadavg()
    clock = Clock()
    instrument_engine(clock)
    qs = QuickstartArgs(seeds=(args.seed,))
    stage_seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="qs-profile-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        warm = profile_warm_start(clock, args, qs)
        stage_seconds["warm_start"] = time.perf_counter() - t0
        start = work / "start"
        warm["model"].save_pretrained(start)
        warm["tokenizer"].save_pretrained(start)
        if args.start is not None:
            start = args.start
        rl_total = 250
        for arm in args.arms:
            t0 = time.perf_counter()
            rl_total = profile_arm(clock, args, qs, arm, start, work / "arms")
            stage_seconds[f"arm_{arm}"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        profile_eval(clock, args, qs, start, work / "eval")
        stage_seconds["eval"] = time.perf_counter() - t0
    full = QuickstartArgs()
    scale = {"warm_start": args.full_sft_steps / args.sft_steps,
             **{f"arm_{a}": rl_total / args.rl_steps for a in args.arms},
             "eval": full.eval_problems / args.eval_problems}
    checks = args.full_sft_steps // SFTConfig().eval_every
    measured = {k: round(v, 4) for k, v in sorted(clock.seconds.items())}
    projected: dict[str, float] = {}
    for key, sec in clock.seconds.items():
        stage, label = key.split("/", 1)
        greedy = stage == "warm_start" and not label.startswith("sft_step/")  # the greedy check and its decode
        factor = 1 if label.endswith("_first_call") else checks if greedy else scale[stage]
        projected[key] = round(sec * factor, 2)
    stage_full = {s: round(sum(v for k, v in projected.items() if k.split("/", 1)[0] == s
                               and k.split("/", 1)[1] in TOP), 1) for s in scale}
    for s_ in scale:  # the unscaled first calls (start-ups) that sit inside a scaled top-level timer
        inner = sum(clock.seconds[k] for k in clock.seconds if k.startswith(s_ + "/") and k.endswith("_first_call")
                    and k.split("/", 1)[1] not in TOP)
        stage_full[s_] = round(stage_full[s_] - inner * (scale[s_] - 1), 1)
    total_core_s = sum(stage_full.values()) + stage_full["eval"] * len(args.arms)  # one eval per checkpoint
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.machine(),
        "cpus": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg(),
        "command": "python -m bench.quickstart_profile " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": vars(args) | {"out": str(args.out), "start": str(args.start)},
        "measured_seconds": measured, "stage_wall_seconds": {k: round(v, 1) for k, v in stage_seconds.items()},
        "projected_full_default_seconds": projected, "projected_stage_seconds": stage_full,
        "projected_core_seconds_all_checkpoints": round(total_core_s, 1),
    }
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=1))
    return 0


#: The labels that partition a stage (the others are nested inside them).
TOP = {"sft_step/batch", "sft_step/forward", "sft_step/backward", "sft_step/clip_adamw", "greedy_check",
       "grader_startup_first_call", "rollout", "update", "checkpoint_total"}


if __name__ == "__main__":
    raise SystemExit(main())
