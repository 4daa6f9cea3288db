"""The quickstart's stages for one seed: warm start, the RL arms, the held-out evaluation.

Each stage reads and writes plain folders under ``<out>/seed<S>/`` so the arms and the evaluations
can run in separate processes (one CPU thread each, see :func:`run_stages`) and a rerun resumes:

    seed0/start/                 the warm-started model (SFT) and sft.json
    seed0/<arm>/                 trainer output (checkpoints, metrics.jsonl) and final/ (the model)
    seed0/eval_<checkpoint>.json per inference mode: eval's Pass@k summary (``eval.summary``); while
                                 the modes run apart, each waits in eval_<checkpoint>.<mode>.json
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from eval.grader import Grader
from eval.summary import summarize_benchmark
from soft_thinking.engines.hf.engine import SoftThinkingEngine, resolve_think_end
from soft_thinking.engines.hf.tiny import tiny_model_and_tokenizer
from soft_thinking.errors import SoftGRPOError
from soft_thinking.io import atomic_write_json
from softgrpo.config import TrainConfig, load_config
from softgrpo.reference.sft import SFTConfig, format_prompt, warm_start
from softgrpo.rewards import RewardScorer, grade_completions
from softgrpo.tasks.arithmetic import make_dataset

REPO = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG = REPO / "configs" / "quickstart.yaml"
#: The RL arms and the config overrides that define each; every arm starts from the same warm start.
ARMS: dict[str, tuple[str, ...]] = {
    "grpo": ("trainer.arm=grpo",),
    "softgrpo": ("trainer.arm=softgrpo",),
    "softgrpo_degenerate": ("trainer.arm=softgrpo", "soft_thinking.degenerate_as_discrete=true"),
}
#: The arms a plain run trains: GRPO vs SofT-GRPO. The degenerate-step variant showed no detectable effect
#: over 3 seeds (README) and is one flag away: ``--arms all`` or ``--arms grpo,softgrpo,softgrpo_degenerate``.
DEFAULT_ARMS: tuple[str, ...] = ("grpo", "softgrpo")
#: Every checkpoint name (the start and each arm's final model); a run evaluates ``QuickstartArgs.checkpoints``.
CHECKPOINTS: tuple[str, ...] = ("start", *ARMS)
MODES: tuple[str, ...] = ("discrete", "soft")
#: The tiny Qwen2 (0.8 M parameters, character tokenizer) every seed starts from.
MODEL_SHAPE = dict(hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=384,
                   max_position_embeddings=256)
DATA_SOURCE = "arithmetic"  # the reward module grades its golds as plain expressions


class WarmStartFailed(SoftGRPOError):
    """The warm start missed its held-out accuracy target: RL from it would show nothing."""


@dataclass(frozen=True)
class QuickstartArgs:
    """Everything one quickstart run needs; built and validated by the CLI before any work starts.

    Attributes:
        config: the training config every arm starts from (``configs/quickstart.yaml``).
        out: output folder; ``seed<S>/`` per seed inside it.
        seeds: the seeds to run (model init, data, warm start and RL all follow the seed).
        overrides: ``key=value`` config overrides for every arm.
        sft: the warm-start recipe (its ``target_accuracy`` is a hard requirement unless ``fast``).
        sft_eval_problems: held-out problems of the warm start's stopping rule (disjoint from the evaluation).
        eval_problems: held-out problems of the final evaluation.
        eval_n: samples per problem and inference mode (Pass@k for k = 1, 2, 4, ..., eval_n). 8 by default:
            the evaluations were half of the RL stage's work at 16, and the Pass@1 CI over problems widens
            little (its variance is mostly between problems); ``--eval-n 16`` for Pass@16.
        jobs: processes that train arms and evaluate checkpoints side by side (one CPU thread each); the
            default 3 runs the two default arms and the start's evaluation at once (measured with three arms
            on 2 cores: 246 s vs 270 s with 2 and 449 s with 1).
        threads: CPU threads of the warm start (it runs alone, before the arms).
        fast: a smoke run of the plumbing (tiny budgets, no target): its numbers mean nothing.
        arms: the RL arms to train, in ``ARMS`` order (``grpo`` always: it is the learning check's control).
    """

    config: str = str(DEFAULT_CONFIG)
    out: str = "runs/quickstart"
    seeds: tuple[int, ...] = (0,)
    overrides: tuple[str, ...] = ()
    sft: SFTConfig = field(default_factory=SFTConfig)
    sft_eval_problems: int = 100
    eval_problems: int = 200
    eval_n: int = 8
    jobs: int = 3
    threads: int = 2
    fast: bool = False
    arms: tuple[str, ...] = DEFAULT_ARMS

    @property
    def checkpoints(self) -> tuple[str, ...]:
        """The evaluated checkpoints: the start and every trained arm."""
        return ("start", *self.arms)

    def arm_overrides(self, seed: int, arm: str, out: Path) -> list[str]:
        fast = ["trainer.total_training_steps=2", "trainer.save_freq=0", "data.train_size=256"] if self.fast else []
        return [f"trainer.seed={seed}", *fast, *self.overrides, *ARMS[arm], f"trainer.default_local_dir={out / arm}",
                f"trainer.experiment_name={out.parent.name}-seed{seed}-{arm}", "trainer.num_threads=1"]

    def load_arm_config(self, seed: int, arm: str, out: Path) -> TrainConfig:
        return load_config(self.config, self.arm_overrides(seed, arm, out))


def seed_dir(args: QuickstartArgs, seed: int) -> Path:
    return Path(args.out) / f"seed{seed}"


def held_out_rows(args: QuickstartArgs, seed: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(final evaluation rows, warm-start stopping-rule rows): disjoint slices of the test split."""
    rows = make_dataset("test", args.eval_problems + args.sft_eval_problems, seed=seed)
    return rows[: args.eval_problems], rows[args.eval_problems :]


def run_warm_start(args: QuickstartArgs, seed: int) -> dict[str, Any]:
    """SFT a fresh tiny model until the held-out greedy target; save it to ``seed<S>/start``.

    Raises :class:`WarmStartFailed` (after saving nothing) when the target is missed, unless ``fast``.
    Reuses a finished warm start of an earlier run.
    """
    out = seed_dir(args, seed)
    info_path = out / "start" / "sft.json"
    if info_path.is_file():
        return json.loads(info_path.read_text())
    torch.set_num_threads(args.threads)
    cfg = args.load_arm_config(seed, "grpo", out)
    model, tok = tiny_model_and_tokenizer("qwen2", seed=seed, **MODEL_SHAPE)
    train_rows = make_dataset("train", cfg.data.train_size, seed=seed)
    _, sft_val = held_out_rows(args, seed)
    scorer = RewardScorer(workers=1)
    try:
        res = warm_start(model, tok, train_rows, sft_val, lambda t, a: scorer(DATA_SOURCE, t, a), args.sft,
                         seed=seed, chat_template=cfg.data.apply_chat_template, progress=cfg.trainer.progress)
    finally:
        scorer.close()
    info = {"seed": seed, "steps": res.steps, "greedy_accuracy": res.accuracy, "seconds": res.seconds,
            "threads": args.threads, "target": args.sft.target_accuracy, "reached": res.reached, "history": res.history}
    if not res.reached and not args.fast:
        raise WarmStartFailed(
            f"warm start of seed {seed} reached {100 * res.accuracy:.0f}% held-out greedy accuracy after {res.steps} "
            f"steps ({res.seconds:.0f} s), below the target {100 * args.sft.target_accuracy:.0f}%: RL from this model "
            "would show nothing, so no comparison is written. Check the machine with `python -m softgrpo.quickstart "
            f"--seed {seed} --stage warmstart`; raise the budget with --sft-max-steps, or try another --seed, and "
            "report the JSON line if a default seed misses.")
    model.save_pretrained(out / "start")
    tok.save_pretrained(out / "start")
    atomic_write_json(info_path, info)  # written last: its presence marks a finished warm start
    return info


def _load_model(path: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).eval()


def _load_tokenizer(path: Path) -> Any:
    from soft_thinking.engines.hf.models import load_tokenizer

    return load_tokenizer(path)


def train_arm(args: QuickstartArgs, seed: int, arm: str) -> dict[str, Any]:
    """Train one arm from the warm start (one thread); save the final model to ``<arm>/final``."""
    from softgrpo.reference.trainer import Trainer

    torch.set_num_threads(1)
    out = seed_dir(args, seed)
    done = out / arm / "final" / "train.json"
    if done.is_file():
        return json.loads(done.read_text())
    cfg = args.load_arm_config(seed, arm, out)
    t0 = time.perf_counter()
    trainer = Trainer(cfg, model=_load_model(out / "start"), tokenizer=_load_tokenizer(out / "start"))
    trainer.train()  # the trainer builds its reward scorer from cfg.custom_reward_function and closes it
    trainer.model.save_pretrained(out / arm / "final")
    lines = [json.loads(ln) for ln in (out / arm / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    info = {"arm": arm, "seconds": time.perf_counter() - t0, "steps": len(lines), **reward_gain(lines)}
    atomic_write_json(done, info)
    return info


def reward_gain(lines: Sequence[dict[str, Any]], window: int = 25) -> dict[str, float]:
    """Mean training reward over the first and the last ``window`` steps (the learning signal)."""
    rewards = [ln["reward/mean"] for ln in lines if "reward/mean" in ln]
    w = max(1, min(window, len(rewards) // 2))
    first, last = sum(rewards[:w]) / w, sum(rewards[-w:]) / w
    return {"reward_first": first, "reward_last": last, "reward_gain": last - first}


def evaluate_mode(args: QuickstartArgs, seed: int, checkpoint: str, mode: str) -> dict[str, Any]:
    """One inference mode of one checkpoint on the held-out rows: eval's Pass@k summary.

    Each mode draws its samples from ``seed`` alone, so the modes can run in separate processes; the
    summary waits in ``eval_<checkpoint>.<mode>.json`` until :func:`evaluate_checkpoint` merges them.
    """
    torch.set_num_threads(1)
    out = seed_dir(args, seed)
    part = _eval_part(out, checkpoint, mode)
    if part.is_file():
        return json.loads(part.read_text())
    model_dir = out / ("start" if checkpoint == "start" else f"{checkpoint}/final")
    model, tok = _load_model(model_dir), _load_tokenizer(out / "start")
    cfg = args.load_arm_config(seed, "softgrpo", out)
    st = cfg.soft_thinking_config(resolve_think_end(tok))
    rows, _ = held_out_rows(args, seed)
    prompts = [format_prompt(tok, r["prompt"], cfg.data.apply_chat_template) for r in rows]
    engine = SoftThinkingEngine(model, tok, compile_step=cfg.actor_rollout_ref.rollout.compile_step)
    grader = Grader(workers=1, timeout_s=cfg.custom_reward_function.timeout_s)
    try:
        samples = engine.generate(prompts, st.replace(enable_soft_thinking=mode == "soft"), n=args.eval_n,
                                  max_new_tokens=cfg.data.max_response_length, seed=seed, batch_size=400)
        grades = grade_completions(grader, DATA_SOURCE, [s.text for s in samples],
                                   [rows[i // args.eval_n]["answer"] for i in range(len(samples))])
    finally:
        grader.close()
    records = [{"problem_id": i // args.eval_n, "sample_index": i % args.eval_n, "correct": g.correct,
                "num_tokens": s.num_tokens, "num_thinking_tokens": s.num_thinking_tokens,
                "soft_share": s.soft_share, "grade_status": g.status}
               for i, (s, g) in enumerate(zip(samples, grades))]
    summary = summarize_benchmark(records, args.eval_n, seed=seed)
    atomic_write_json(part, summary)
    return summary


def evaluate_checkpoint(args: QuickstartArgs, seed: int, checkpoint: str) -> dict[str, Any]:
    """Discrete and soft inference of one checkpoint: ``eval_<checkpoint>.json``, one summary per mode.

    Runs the modes not yet done (:func:`evaluate_mode`), then merges their parts into the one file.
    """
    out = seed_dir(args, seed)
    path = out / f"eval_{checkpoint}.json"
    if path.is_file():
        return json.loads(path.read_text())
    res = {mode: evaluate_mode(args, seed, checkpoint, mode) for mode in MODES}
    atomic_write_json(path, res)
    for mode in MODES:
        _eval_part(out, checkpoint, mode).unlink()
    return res


def _eval_part(out: Path, checkpoint: str, mode: str) -> Path:
    """Where one mode's summary waits until its checkpoint's file is written."""
    return out / f"eval_{checkpoint}.{mode}.json"


def run_stages(args: QuickstartArgs, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train ``args.arms`` and evaluate ``args.checkpoints``: (train infos, evals), both in that order.

    With ``args.jobs > 1`` the work runs in ``jobs`` fresh processes (spawn, one thread each) and an
    evaluation starts as soon as its checkpoint exists: the start's evaluation runs beside the arms, an
    arm's evaluation beside the arms still training, so no core waits for a stage barrier. Each
    inference mode is its own task, so the last arm's evaluation runs on both cores, not one; the
    parent merges the modes' parts (the files are the same as one process writes).
    The tiny model's forward is bound by per-op overhead, so a second thread barely helps one run;
    two runs side by side use both cores (measured gain in the README).
    """
    if args.jobs <= 1:
        return ([train_arm(args, seed, arm) for arm in args.arms],
                [evaluate_checkpoint(args, seed, c) for c in args.checkpoints])
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        arms = {pool.submit(train_arm, args, seed, arm): arm for arm in args.arms}

        def submit_eval(checkpoint: str) -> list[Any]:  # one task a mode: the last checkpoint's modes share the cores
            return [pool.submit(evaluate_mode, args, seed, checkpoint, mode) for mode in MODES]

        evals = {"start": submit_eval("start")}
        for done in as_completed(arms):  # FIFO pool: an arm's evaluation queues behind the work already queued
            evals[arms[done]] = submit_eval(arms[done])
        by_arm = {arm: f.result() for f, arm in arms.items()}
        for futures in evals.values():
            for f in futures:
                f.result()
        return [by_arm[arm] for arm in args.arms], [evaluate_checkpoint(args, seed, c) for c in args.checkpoints]


def run_seed(args: QuickstartArgs, seed: int) -> dict[str, Any]:
    """Warm start, every arm, every checkpoint's evaluation; the seed's results as one dict."""
    t0 = time.perf_counter()
    sft = run_warm_start(args, seed)
    t1 = time.perf_counter()
    trained, evals = run_stages(args, seed)
    t2 = time.perf_counter()
    return {"seed": seed, "sft": sft, "train": {t["arm"]: t for t in trained},
            "eval": dict(zip(args.checkpoints, evals)),
            "wall_seconds": {"warm_start": t1 - t0, "arms_and_eval": t2 - t1, "total": t2 - t0}}
