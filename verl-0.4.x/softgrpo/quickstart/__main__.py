"""The embedded default: SofT-GRPO vs GRPO end to end on 2 CPU cores in 6-7 minutes.

    python -m softgrpo.quickstart [--out runs/quickstart] [--seeds N | --seed S] [--stage all|warmstart]
                                  [--arms grpo,softgrpo | all] [--fast] [key=value ...]

1. a tiny Qwen2 (char tokenizer, hidden 128, 4 layers) is warm-started by SFT on the synthetic
   arithmetic task's ``<think>`` scratchpads until its held-out greedy accuracy reaches the target;
   a seed that misses it stops the run with exit status 2 and no comparison;
2. from that start, the same RL budget for GRPO (discrete rollouts) and SofT-GRPO (Gumbel soft
   thinking, the paper's estimator), with ``configs/quickstart.yaml``; ``--arms all`` adds SofT-GRPO
   scoring single-candidate soft steps as discrete (``softgrpo_degenerate``,
   ``soft_thinking.degenerate_as_discrete``; no detectable effect over 3 seeds, so not by default);
3. every checkpoint is evaluated on held-out problems with discrete and soft inference: eval's
   mean@n (= Pass@1) and unbiased Pass@k with bootstrap CIs over problems, and over seeds;
4. ``<out>/``: ``report.md``, ``summary.json``, ``metrics.jsonl``, ``training_curves.png``,
   ``passk.png``; per seed the models, trainer logs and evaluations under ``seed<S>/``.

``--stage warmstart --seed S`` runs only the warm start of one seed and prints one JSON line
``{"seed", "steps", "greedy_accuracy", "seconds"}`` (a 3-4 minute check of a machine with seed 0).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from soft_thinking.errors import SoftGRPOError, exit_on_error
from soft_thinking.runlock import hold_run_lock
from softgrpo.quickstart.pipeline import ARMS, DEFAULT_ARMS, QuickstartArgs, run_seed, run_warm_start
from softgrpo.quickstart.report import LearningCheckFailed, write_outputs
from softgrpo.reference.sft import SFTConfig

#: Config keys the quickstart sets itself, per arm and seed: an override of them would be silently replaced.
NOT_OVERRIDABLE: dict[str, str] = {
    "trainer.arm": "the quickstart trains the arms of --arms (grpo, softgrpo, softgrpo_degenerate)",
    "trainer.default_local_dir": "each arm writes under --out/seed<S>/<arm>; use --out",
    "trainer.experiment_name": "named after --out, the seed and the arm",
    "trainer.seed": "use --seed S or --seeds N",
    "trainer.num_threads": "each arm runs one thread (use --jobs for processes, --threads for the warm start)",
    "actor_rollout_ref.model.path": "every arm starts from the warm-started tiny model",
    "soft_thinking.degenerate_as_discrete": "it defines the softgrpo_degenerate arm (--arms all)",
    "soft_thinking.enable_soft_thinking": "trainer.arm decides it per arm",
    "data.train_files": "the warm start and the evaluation use the builtin arithmetic task",
    "data.data_source": "the quickstart grades the arithmetic task",
}


def parse_args(argv: list[str] | None) -> tuple[QuickstartArgs, str]:
    """The validated arguments and the stage; every bad value is an error before any work."""
    p = argparse.ArgumentParser(prog="python -m softgrpo.quickstart", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = QuickstartArgs()
    p.add_argument("--config", default=d.config)
    p.add_argument("--out", default=d.out)
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, default=None, help="run seeds 0..N-1 (CIs over seeds); default 1")
    seeds.add_argument("--seed", type=int, default=None, help="run this one seed")
    p.add_argument("--stage", choices=("all", "warmstart"), default="all")
    p.add_argument("--fast", action="store_true", help="a smoke run of the plumbing (tiny budgets, no target)")
    p.add_argument("--arms", default=",".join(DEFAULT_ARMS),
                   help=f"comma-separated RL arms from {', '.join(ARMS)} (grpo always), or 'all'")
    p.add_argument("--jobs", type=int, default=d.jobs, help="arms/evaluations side by side (processes)")
    p.add_argument("--eval-problems", type=int, default=d.eval_problems)
    p.add_argument("--eval-n", type=int, default=d.eval_n)
    p.add_argument("--sft-target", type=float, default=d.sft.target_accuracy)
    p.add_argument("--sft-max-steps", type=int, default=d.sft.max_steps)
    p.add_argument("--sft-eval-problems", type=int, default=d.sft_eval_problems)
    p.add_argument("--threads", type=int, default=d.threads, help="CPU threads of the warm start")
    p.add_argument("overrides", nargs="*", help="config overrides key=value for every arm")
    a = p.parse_args(argv)
    for name, value, low in (("--seeds", a.seeds, 1), ("--seed", a.seed, 0), ("--jobs", a.jobs, 1),
                             ("--eval-problems", a.eval_problems, 1), ("--eval-n", a.eval_n, 1),
                             ("--sft-max-steps", a.sft_max_steps, 1), ("--sft-eval-problems", a.sft_eval_problems, 1),
                             ("--threads", a.threads, 1)):
        if value is not None and value < low:
            raise SoftGRPOError(f"{name}={value}: allowed an integer >= {low}")
    for item in a.overrides:
        key = item.partition("=")[0].strip()
        owner = next((k for k, why in NOT_OVERRIDABLE.items() if key == k or key.startswith(k + ".")), None)
        if owner is not None:
            raise SoftGRPOError(f"override {item!r} is not honoured by the quickstart: {NOT_OVERRIDABLE[owner]}; "
                                f"allowed any other config key (not {sorted(NOT_OVERRIDABLE)})")
    arms = parse_arms(a.arms)
    seeds = (a.seed,) if a.seed is not None else tuple(range(a.seeds or 1))
    sft = SFTConfig(target_accuracy=a.sft_target, max_steps=a.sft_max_steps)
    eval_problems, eval_n, sft_eval = a.eval_problems, a.eval_n, a.sft_eval_problems
    if a.fast:
        sft = dataclasses.replace(sft, max_steps=20, eval_every=10, batch_size=16)
        eval_problems, eval_n, sft_eval = 8, 4, 8
    args = QuickstartArgs(config=a.config, out=a.out, seeds=seeds, overrides=tuple(a.overrides), sft=sft.validate(),
                          sft_eval_problems=sft_eval, eval_problems=eval_problems, eval_n=eval_n, jobs=a.jobs,
                          threads=a.threads, fast=a.fast, arms=arms)
    for arm in arms:  # every arm's config validates before any work starts
        args.load_arm_config(seeds[0], arm, Path(a.out) / f"seed{seeds[0]}")
    return args, a.stage


def parse_arms(text: str) -> tuple[str, ...]:
    """``--arms``: ``all`` or a comma-separated subset of ``ARMS`` that includes ``grpo``; returned in ``ARMS`` order."""
    names = list(ARMS) if text.strip() == "all" else [n.strip() for n in text.split(",") if n.strip()]
    allowed = f"'all' or a comma-separated subset of {', '.join(ARMS)} that includes grpo (the learning check's control)"
    if not names or any(n not in ARMS for n in names) or "grpo" not in names or len(set(names)) != len(names):
        raise SoftGRPOError(f"--arms={text!r}: allowed {allowed}")
    return tuple(a for a in ARMS if a in names)


@exit_on_error
def main(argv: list[str] | None = None) -> int:
    args, stage = parse_args(argv)
    with hold_run_lock(args.out):  # one quickstart per --out folder (two would share warm starts and arms)
        return _run(args, stage)


def _run(args: QuickstartArgs, stage: str) -> int:
    if stage == "warmstart":
        for seed in args.seeds:
            info = run_warm_start(args, seed)
            print(json.dumps({k: info[k] for k in ("seed", "steps", "greedy_accuracy", "seconds", "threads")}))
        return 0
    t0 = time.perf_counter()
    runs = []
    for seed in args.seeds:
        print(f"[quickstart] seed {seed}: warm start, {len(args.arms)} arms ({', '.join(args.arms)}), evaluation",
              flush=True)
        runs.append(run_seed(args, seed))
    try:
        report = write_outputs(args, runs, time.perf_counter() - t0)
    except LearningCheckFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report)
    print(f"done in {time.perf_counter() - t0:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
