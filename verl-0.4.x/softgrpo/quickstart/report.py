"""The quickstart's outputs: summary.json, metrics.jsonl, report.md and the two plots.

Per seed the numbers are eval's summaries (``eval.summary``: mean@n = Pass@1, unbiased Pass@k,
95% bootstrap CIs over problems). Over seeds each cell is ``mean ± sd`` with a 95% Student-t
interval ``mean ± t_{0.975, S-1} · sd / sqrt(S)``; the arms' differences are paired by seed.

The learning check: the run exists to show RL moving a warm-started model. If the GRPO control
did not raise its training reward and its held-out discrete Pass@1 above the warm start on every
seed, the report says FAILED at the top and the command exits 1 (:class:`LearningCheckFailed`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from eval.report import passk_png
from soft_thinking.errors import SoftGRPOError
from soft_thinking.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from softgrpo.quickstart.pipeline import ARMS, MODES, QuickstartArgs, seed_dir

LABELS = {"start": "start (SFT)", "grpo": "GRPO", "softgrpo": "SofT-GRPO",
          "softgrpo_degenerate": "SofT-GRPO, degenerate steps discrete"}


class LearningCheckFailed(SoftGRPOError):
    """The GRPO control did not learn: the comparison would mean nothing."""


def over_seeds(values: list[float]) -> dict[str, float]:
    """Mean, sd and the 95% t-interval of per-seed values (sd and interval 0-width for one seed)."""
    from scipy.stats import t

    a = np.asarray(values, dtype=np.float64)
    mean = float(a.mean())
    if a.size < 2:
        return {"mean": mean, "sd": 0.0, "ci_low": mean, "ci_high": mean, "seeds": int(a.size)}
    sd = float(a.std(ddof=1))
    half = float(t.ppf(0.975, a.size - 1)) * sd / math.sqrt(a.size)
    return {"mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half, "seeds": int(a.size)}


def k_columns(run: dict[str, Any]) -> list[str]:
    """The k of Pass@k in numeric order (summaries read back from JSON have sorted string keys: "1", "16", "2")."""
    return sorted(run["eval"]["start"]["discrete"]["pass_at_k"], key=int)


def _pk(run: dict[str, Any], ckpt: str, mode: str, k: str) -> float:
    return run["eval"][ckpt][mode]["pass_at_k"][k]["value"]


def run_arms(runs: list[dict[str, Any]]) -> list[str]:
    """The arms the runs trained, in ``ARMS`` order."""
    return [a for a in ARMS if a in runs[0]["train"]]


def run_checkpoints(runs: list[dict[str, Any]]) -> list[str]:
    return ["start", *run_arms(runs)]


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per checkpoint and mode, Pass@k over seeds; paired differences of the arms (Pass@1)."""
    ks = k_columns(runs[0])
    arms, ckpts = run_arms(runs), run_checkpoints(runs)
    table = {c: {m: {k: over_seeds([_pk(r, c, m, k) for r in runs]) for k in ks} for m in MODES} for c in ckpts}
    pairs = [("grpo", "start"), ("softgrpo", "start"), ("softgrpo_degenerate", "start"), ("softgrpo", "grpo"),
             ("softgrpo_degenerate", "softgrpo")]
    diffs = {f"{a} - {b}": {m: over_seeds([_pk(r, a, m, "1") - _pk(r, b, m, "1") for r in runs]) for m in MODES}
             for a, b in pairs if a in ckpts and b in ckpts}
    gains = {arm: over_seeds([r["train"][arm]["reward_gain"] for r in runs]) for arm in arms}
    return {"pass_at_k": table, "pass_at_1_differences": diffs, "train_reward_gain": gains}


def learning_failures(runs: list[dict[str, Any]]) -> list[str]:
    """Seeds on which the GRPO control did not learn (training reward and held-out Pass@1 must both rise)."""
    bad = []
    for r in runs:
        g = r["train"]["grpo"]
        d = _pk(r, "grpo", "discrete", "1") - _pk(r, "start", "discrete", "1")
        if g["reward_gain"] <= 0 or d <= 0:
            bad.append(f"seed {r['seed']}: GRPO training reward {g['reward_first']:.3f} -> {g['reward_last']:.3f}, "
                       f"held-out discrete Pass@1 change {100 * d:+.1f} points")
    return bad


def _cell(s: dict[str, float], sd: bool) -> str:
    if sd:
        return f"{100 * s['mean']:.1f} ± {100 * s['sd']:.1f}"
    return f"{100 * s['mean']:.1f}"


def _problem_cell(m: dict[str, float]) -> str:
    return f"{100 * m['value']:.1f} [{100 * m['ci_low']:.1f}, {100 * m['ci_high']:.1f}]"


def report_markdown(args: QuickstartArgs, runs: list[dict[str, Any]], agg: dict[str, Any], failures: list[str],
                    seconds: float) -> str:
    ks = k_columns(runs[0])
    many = len(runs) > 1
    lines: list[str] = []
    if args.fast:
        lines += ["# SMOKE RUN (--fast): plumbing only", "",
                  "**The budgets are tiny and no target is enforced: these numbers mean nothing.**", ""]
    elif failures:
        lines += ["# FAILED: the GRPO control did not learn", "", *[f"- {f}" for f in failures], "",
                  "The comparison below is not a result. Rerun with more RL steps "
                  "(`trainer.total_training_steps=...`) or report the seeds above.", ""]
    lines += ["# SofT-GRPO quickstart report", "",
              f"Seeds {', '.join(str(r['seed']) for r in runs)}; {args.eval_problems} held-out problems × "
              f"n={args.eval_n} samples per checkpoint and inference mode; wall time of this invocation "
              f"{seconds:.0f} s (finished stages of an earlier run in this folder are reused, not rerun).", "",
              "## Pass@k over seeds" if many else "## Pass@k", "",
              ("Cells: mean ± sd over seeds (percent); the per-seed tables below carry 95% bootstrap CIs over problems."
               if many else "Cells: percent [95% bootstrap CI over problems]."), "",
              "| checkpoint | inference | " + " | ".join(f"Pass@{k}" for k in ks) + " |",
              "|---|---|" + "---|" * len(ks)]
    for c in run_checkpoints(runs):
        for m in MODES:
            if many:
                cells = [_cell(agg["pass_at_k"][c][m][k], sd=True) for k in ks]
            else:
                cells = [_problem_cell(runs[0]["eval"][c][m]["pass_at_k"][k]) for k in ks]
            lines.append(f"| {LABELS[c]} | {m} | " + " | ".join(cells) + " |")
    lines += ["", "## Paired differences in Pass@1 (points; 95% t-interval over seeds)" if many
              else "## Differences in Pass@1 (points, one seed: no interval)", "",
              "| difference | discrete inference | soft inference |", "|---|---|---|"]
    for name, d in agg["pass_at_1_differences"].items():
        cells = [f"{100 * d[m]['mean']:+.1f}" + (f" [{100 * d[m]['ci_low']:+.1f}, {100 * d[m]['ci_high']:+.1f}]"
                                                 if many else "") for m in MODES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Training", "", "| arm | reward first 25 steps → last 25 | RL seconds (per seed) |", "|---|---|---|"]
    for arm in run_arms(runs):
        t = [r["train"][arm] for r in runs]
        lines.append(f"| {LABELS[arm]} | " + "; ".join(f"{x['reward_first']:.3f} → {x['reward_last']:.3f}" for x in t)
                     + " | " + ", ".join(f"{x['seconds']:.0f}" for x in t) + " |")
    lines += ["", "Warm starts: " + "; ".join(
        f"seed {r['seed']}: {r['sft']['steps']} SFT steps to {100 * r['sft']['greedy_accuracy']:.0f}% held-out greedy "
        f"accuracy ({r['sft']['seconds']:.0f} s)" for r in runs) + ".", ""]
    if many:
        for r in runs:
            lines += [f"## Seed {r['seed']} (95% bootstrap CIs over problems)", "",
                      "| checkpoint | inference | " + " | ".join(f"Pass@{k}" for k in ks) + " | tokens |",
                      "|---|---|" + "---|" * (len(ks) + 1)]
            for c in run_checkpoints(runs):
                for m in MODES:
                    e = r["eval"][c][m]
                    lines.append(f"| {LABELS[c]} | {m} | " + " | ".join(_problem_cell(e["pass_at_k"][k]) for k in ks)
                                 + f" | {e['avg_tokens']:.1f} |")
            lines.append("")
    lines += ["Files: `summary.json` (every number), `metrics.jsonl` (every training step of every arm and seed), "
              "`training_curves.png`, `passk.png`; models and logs under `seed*/`.", ""]
    return "\n".join(lines)


def plot_training(lines: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("reward/mean", "reward (train, 10-step mean)"), ("response/length_mean", "response length"),
            ("actor/kl_ref", "KL to reference"), ("replay/max_abs_diff", "replay max|Δ log π|")]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2))
    for ax, (key, title) in zip(axes, keys):
        for arm in [a for a in ARMS if any(r["arm"] == a for r in lines)]:
            pts = [(r["step"], r[key]) for r in lines if r["arm"] == arm and r["seed"] == lines[0]["seed"] and key in r]
            if not pts:
                continue
            steps, vals = map(np.asarray, zip(*pts))
            if key == "reward/mean" and len(vals) >= 10:
                vals, steps = np.convolve(vals, np.ones(10) / 10, mode="valid"), steps[9:]
            ax.plot(steps, vals, label=LABELS[arm])
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def passk_summary(agg: dict[str, Any], problems: int) -> dict[str, Any]:
    """The over-seeds table in eval's summary shape, so eval's Pass@k plot draws it."""
    return {"benchmarks": {f"{LABELS[c]}, {m}": {"num_problems": problems, "pass_at_k": {
        k: {"value": s["mean"], "ci_low": s["ci_low"], "ci_high": s["ci_high"]} for k, s in agg["pass_at_k"][c][m].items()
    }} for c in agg["pass_at_k"] for m in MODES}}


def write_outputs(args: QuickstartArgs, runs: list[dict[str, Any]], seconds: float) -> str:
    """Write every output; raise :class:`LearningCheckFailed` after writing a FAILED report."""
    out = Path(args.out)
    agg = aggregate(runs)
    failures = [] if args.fast else learning_failures(runs)
    status = "smoke" if args.fast else ("failed" if failures else "ok")
    metrics = [{"seed": r["seed"], "arm": arm, **json.loads(ln)} for r in runs for arm in run_arms(runs)
               for ln in (seed_dir(args, r["seed"]) / arm / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in metrics))
    atomic_write_json(out / "summary.json", {"status": status, "failures": failures, "seconds": seconds,
                                             "config": args.config, "overrides": list(args.overrides),
                                             "seeds": [r["seed"] for r in runs], "over_seeds": agg, "runs": runs})
    plot_training(metrics, out / "training_curves.png")
    title = f"held-out Pass@k, mean over {len(runs)} seed(s)"
    atomic_write_bytes(out / "passk.png", passk_png(passk_summary(agg, args.eval_problems), title))
    report = report_markdown(args, runs, agg, failures, seconds)
    atomic_write_text(out / "report.md", report)
    if failures:
        raise LearningCheckFailed("no learning: " + "; ".join(failures) + f" (report: {out / 'report.md'})")
    return report
