"""The embedded default: SofT-GRPO vs GRPO end to end on 2 CPU cores in under 10 minutes.

    python -m softgrpo.quickstart [--out runs/quickstart] [--seeds 1] [--fast] [key=value ...]

1. a tiny Qwen2 (char tokenizer, hidden 128, 4 layers) is warm-started by SFT on the synthetic
   arithmetic task's ``<think>`` scratchpads until its held-out greedy accuracy reaches a
   threshold (``start``);
2. from that start, the same budget of GRPO (discrete rollouts) and of SofT-GRPO (Gumbel soft
   thinking) with ``configs/quickstart.yaml``;
3. every checkpoint (start, GRPO, SofT-GRPO) is evaluated on held-out problems with discrete and
   soft inference: mean@n (= Pass@1) and unbiased Pass@k with bootstrap CIs (``eval.metrics``);
4. ``runs/<name>/``: ``report.md``, ``summary.json``, ``metrics.jsonl``, ``training_curves.png``,
   ``passk.png`` and the checkpoints. ``--seeds 3`` repeats it and reports the spread over seeds.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eval.metrics import bootstrap_ci, pass_at_k
from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.engines.hf.engine import SoftThinkingEngine, resolve_think_end
from soft_thinking.engines.hf.tiny import tiny_model_and_tokenizer
from soft_thinking.io import atomic_write_text
from softgrpo.config import TrainConfig, load_config
from softgrpo.reference.sft import format_prompt, warm_start
from softgrpo.reference.trainer import Trainer
from softgrpo.rewards import RewardScorer
from softgrpo.tasks.arithmetic import make_dataset

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "configs" / "quickstart.yaml"
ARMS = ("grpo", "softgrpo")
MODES = ("discrete", "soft")
MODEL_SHAPE = dict(hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=384,
                   max_position_embeddings=256)


def inference_config(cfg: TrainConfig, mode: str, think_end: tuple[int, ...]) -> SoftThinkingConfig:
    """Evaluation sampling: the training rollout's settings, soft (Gumbel) or discrete."""
    r = cfg.rollout
    st = SoftThinkingConfig(
        enable_soft_thinking=mode == "soft", temperature=r.temperature, top_p=r.top_p, top_k=r.top_k, min_p=r.min_p,
        think_end_token_ids=think_end, **{k: v for k, v in cfg.soft_thinking.items() if k in ("max_topk", "noise",
                                                                                            "gumbel_softmax_temperature")},
    )
    return st.validate()


def evaluate(model: Any, tokenizer: Any, rows: list[dict[str, str]], cfg: TrainConfig, scorer: RewardScorer,
             n: int, seed: int) -> dict[str, Any]:
    """For each inference mode: per-problem correct counts -> mean@n, Pass@k and CIs."""
    engine = SoftThinkingEngine(model, tokenizer)
    think_end = resolve_think_end(tokenizer)
    chat = cfg.data.apply_chat_template
    prompts = [format_prompt(tokenizer, r["prompt"], chat) for r in rows]
    out: dict[str, Any] = {}
    for mode in MODES:
        samples = engine.generate(prompts, inference_config(cfg, mode, think_end), n=n,
                                  max_new_tokens=cfg.data.max_response_length, seed=seed, batch_size=400)
        scores = scorer("arithmetic", [s.text for s in samples], [r["answer"] for r in rows for _ in range(n)])
        correct = np.array(scores).reshape(len(rows), n) > 0.5
        c = correct.sum(1)
        ks = [k for k in (1, 2, 4, 8, 16, 32) if k <= n]
        res: dict[str, Any] = {"n": n, "problems": len(rows)}
        for k in ks:
            per_problem = [pass_at_k(n, int(ci), k) for ci in c]
            lo, hi = bootstrap_ci(per_problem, seed=seed)
            res[f"pass@{k}"] = {"mean": float(np.mean(per_problem)), "ci95": [lo, hi]}
        res["mean_tokens"] = float(np.mean([s.num_tokens for s in samples]))
        res["mean_thinking_tokens"] = float(np.mean([s.num_thinking_tokens for s in samples]))
        out[mode] = res
    return out


def run_seed(args: argparse.Namespace, seed: int, out: Path, scorer: RewardScorer) -> dict[str, Any]:
    overrides = [f"trainer.seed={seed}", *args.overrides]
    if args.fast:
        overrides += ["trainer.total_training_steps=2", "trainer.save_freq=0", "data.train_size=256"]
    base = load_config(args.config, overrides)
    torch.set_num_threads(base.trainer.num_threads)
    t0 = time.perf_counter()
    model, tok = tiny_model_and_tokenizer("qwen2", seed=seed, **MODEL_SHAPE)
    train_rows = make_dataset("train", base.data.train_size, seed=seed)
    held_out = make_dataset("test", args.eval_problems + args.sft_eval_problems, seed=seed)
    # disjoint held-out sets: the SFT stopping rule never sees the problems of the final evaluation
    test_rows, sft_val_rows = held_out[: args.eval_problems], held_out[args.eval_problems :]

    def grade(texts: list[str], answers: list[str]) -> list[float]:
        return scorer("arithmetic", texts, answers)

    start_dir = out / "start"
    if (start_dir / "config.json").is_file():  # resume: the warm start is already done
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(start_dir).eval()
        sft_info = json.loads((out / "sft.json").read_text())
    else:
        sft = warm_start(
            model, tok, train_rows, sft_val_rows, grade,
            max_steps=args.sft_max_steps, target_accuracy=args.sft_target, seed=seed,
            chat_template=base.data.apply_chat_template, progress=base.trainer.progress,
        )
        sft_info = {"steps": sft.steps, "greedy_accuracy": sft.accuracy, "seconds": sft.seconds, "history": sft.history}
        model.save_pretrained(start_dir)
        tok.save_pretrained(start_dir)
        atomic_write_text(out / "sft.json", json.dumps(sft_info, indent=2))

    models = {"start": model}
    train_time = {}
    for arm in ARMS:
        cfg = load_config(args.config, [*overrides, f"trainer.arm={arm}", f"trainer.default_local_dir={out / arm}",
                                        f"trainer.experiment_name={out.name}-{arm}"])
        t1 = time.perf_counter()
        scorer.counts.clear()
        trainer = Trainer(cfg, model=copy.deepcopy(model), tokenizer=tok, scorer=scorer)
        trainer.train()
        train_time[arm] = time.perf_counter() - t1
        models[arm] = trainer.model
    results = {name: evaluate(m, tok, test_rows, base, scorer, args.eval_n, seed) for name, m in models.items()}
    return {"seed": seed, "sft": sft_info, "train_seconds": train_time, "eval": results,
            "seconds": time.perf_counter() - t0}


def _metrics_lines(out: Path) -> list[dict[str, Any]]:
    lines = []
    for arm in ARMS:
        path = out / arm / "metrics.jsonl"
        if path.exists():
            lines += [{"arm": arm, **json.loads(ln)} for ln in path.read_text().splitlines() if ln.strip()]
    return lines


def plot_training(lines: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("reward/mean", "reward (train)"), ("response/length_mean", "response length"),
            ("actor/kl_ref", "KL to reference"), ("replay/max_abs_diff", "replay max|Δ log π|")]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2))
    for ax, (key, title) in zip(axes, keys):
        for arm in ARMS:
            pts = [(r["step"], r[key]) for r in lines if r["arm"] == arm and key in r]
            if not pts:
                continue
            steps, vals = zip(*pts)
            if key == "reward/mean" and len(vals) >= 10:  # moving average over 10 steps
                vals = np.convolve(vals, np.ones(10) / 10, mode="valid")
                steps = steps[9:]
            ax.plot(steps, vals, label=arm)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_passk(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(MODES), figsize=(5 * len(MODES), 3.6), sharey=True)
    for ax, mode in zip(axes, MODES):
        for name, res in summary["eval"].items():
            r = res[mode]
            ks = sorted(int(k.split("@")[1]) for k in r if k.startswith("pass@"))
            means = [r[f"pass@{k}"]["mean"] for k in ks]
            lo = [r[f"pass@{k}"]["ci95"][0] for k in ks]
            hi = [r[f"pass@{k}"]["ci95"][1] for k in ks]
            ax.plot(ks, means, marker="o", label=name)
            ax.fill_between(ks, lo, hi, alpha=0.15)
        ax.set_xscale("log", base=2)
        ax.set_title(f"{mode} inference")
        ax.set_xlabel("k")
        ax.set_ylabel("Pass@k (held out)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cell(r: dict[str, Any]) -> str:
    return f"{100 * r['mean']:.1f} [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]"


def write_report(out: Path, runs: list[dict[str, Any]]) -> None:
    """report.md: per seed the table of Pass@k with CIs, and what it shows."""
    first = runs[0]
    n = first["eval"]["start"]["discrete"]["n"]
    ks = [k for k in (1, 2, 4, 8, 16, 32) if k <= n]
    lines = ["# SofT-GRPO quickstart report", "",
             f"Held-out problems: {first['eval']['start']['discrete']['problems']}, samples per problem: n={n}. "
             "Pass@k is the unbiased estimator; brackets are 95% bootstrap CIs over problems (percent).", ""]
    for run in runs:
        s = run["sft"]
        lines += [f"## Seed {run['seed']}", "",
                  f"Warm start: {s['steps']} SFT steps to {100 * s['greedy_accuracy']:.0f}% held-out greedy accuracy "
                  f"({s['seconds']:.0f} s). RL: " + ", ".join(f"{a} {t:.0f} s" for a, t in run["train_seconds"].items())
                  + f". Whole seed: {run['seconds']:.0f} s.", "",
                  "| checkpoint | inference | " + " | ".join(f"Pass@{k}" for k in ks) + " | tokens |",
                  "|---|---|" + "---|" * len(ks) + "---|"]
        for name, res in run["eval"].items():
            for mode in MODES:
                r = res[mode]
                lines.append(f"| {name} | {mode} | " + " | ".join(_cell(r[f"pass@{k}"]) for k in ks)
                             + f" | {r['mean_tokens']:.1f} |")
        lines.append("")
        start = run["eval"]["start"]
        for arm in ARMS:
            mode = "soft" if arm == "softgrpo" else "discrete"
            d1 = run["eval"][arm][mode]["pass@1"]["mean"] - start[mode]["pass@1"]["mean"]
            lines.append(f"- {arm} ({mode} inference): Pass@1 {100 * start[mode]['pass@1']['mean']:.1f} → "
                         f"{100 * run['eval'][arm][mode]['pass@1']['mean']:.1f} ({'+' if d1 >= 0 else ''}{100 * d1:.1f} points).")
        kmax = ks[-1]
        g = run["eval"]["grpo"]["discrete"][f"pass@{kmax}"]
        sg = run["eval"]["softgrpo"]["soft"][f"pass@{kmax}"]
        overlap = not (sg["ci95"][0] > g["ci95"][1] or g["ci95"][0] > sg["ci95"][1])
        lines.append(f"- Pass@{kmax}: SofT-GRPO (soft) {_cell(sg)} vs GRPO (discrete) {_cell(g)}: "
                     + ("the CIs overlap, so this run does not separate the arms." if overlap
                        else ("SofT-GRPO is higher." if sg["mean"] > g["mean"] else "GRPO is higher.")))
        lines.append("")
    if len(runs) > 1:
        lines += ["## Over seeds", "", "| checkpoint | inference | Pass@1 mean ± sd | "
                  f"Pass@{ks[-1]} mean ± sd |", "|---|---|---|---|"]
        for name in runs[0]["eval"]:
            for mode in MODES:
                p1 = [100 * r["eval"][name][mode]["pass@1"]["mean"] for r in runs]
                pk = [100 * r["eval"][name][mode][f"pass@{ks[-1]}"]["mean"] for r in runs]
                lines.append(f"| {name} | {mode} | {np.mean(p1):.1f} ± {np.std(p1, ddof=1):.1f} | "
                             f"{np.mean(pk):.1f} ± {np.std(pk, ddof=1):.1f} |")
        lines.append("")
    lines += ["Files: `summary.json` (all numbers), `metrics.jsonl` (every training step of both arms), "
              "`training_curves.png`, `passk.png`, checkpoints under `seed*/{grpo,softgrpo}/checkpoints/`.", ""]
    atomic_write_text(out / "report.md", "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(DEFAULT_CONFIG))
    p.add_argument("--out", default="runs/quickstart")
    p.add_argument("--seeds", type=int, default=1, help="repeat with seeds 0..N-1 for CIs over seeds")
    p.add_argument("--fast", action="store_true", help="a tiny budget (CI smoke run)")
    p.add_argument("--eval-problems", type=int, default=200)
    p.add_argument("--eval-n", type=int, default=16)
    p.add_argument("--sft-target", type=float, default=0.4)
    p.add_argument("--sft-max-steps", type=int, default=2500)
    p.add_argument("--sft-eval-problems", type=int, default=100)
    p.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error(f"--seeds={args.seeds}: allowed an integer >= 1")
    if args.fast:
        args.eval_problems, args.eval_n, args.sft_max_steps, args.sft_eval_problems = 8, 4, 20, 8
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    scorer = RewardScorer()
    runs = []
    try:
        for seed in range(args.seeds):
            runs.append(run_seed(args, seed, out / f"seed{seed}", scorer))
    finally:
        scorer.close()
    summary = {"runs": runs, "seconds": time.perf_counter() - t0, "eval": runs[0]["eval"],
               "config": str(args.config), "overrides": args.overrides, "fast": args.fast}
    lines = [{"seed": r["seed"], **ln} for r in runs for ln in _metrics_lines(out / f"seed{r['seed']}")]
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(ln) + "\n" for ln in lines))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    plot_training([ln for ln in lines if ln["seed"] == 0], out / "training_curves.png")
    plot_passk(summary, out / "passk.png")
    write_report(out, runs)
    print((out / "report.md").read_text())
    print(f"done in {summary['seconds']:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
