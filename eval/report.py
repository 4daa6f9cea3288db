"""Human-readable outputs: ``summary.md`` table and the Pass@k plot ``passk.png`` (Agg)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from soft_thinking.io import atomic_write_bytes, atomic_write_text


def _pct(m: dict[str, float] | None) -> str:
    if not m:
        return "-"
    return f"{100 * m['value']:.2f} [{100 * m['ci_low']:.1f}, {100 * m['ci_high']:.1f}]"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def summary_markdown(summary: dict[str, Any], title: str) -> str:
    n = summary["num_samples"]
    lines = [f"# {title}", "", f"{n} samples per problem; 95% bootstrap CIs over problems "
             f"(B={summary['bootstrap']['n_boot']}, seed {summary['bootstrap']['seed']}).", ""]
    benches = summary["benchmarks"]
    ks = sorted({int(k) for b in benches.values() for k in b.get("pass_at_k", {})})
    head = ["benchmark", "problems", "mean@n (Pass@1)"] + [f"Pass@{k}" for k in ks if k > 1]
    head += ["tokens", "tokens (correct)", "thinking tokens", "soft share", "timeouts", "parse errors", "grade errors", "no answer"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, b in benches.items():
        if not b.get("num_problems"):
            lines.append(f"| {name} | 0 (incomplete: {b['incomplete_problems']}) |" + " - |" * (len(head) - 2))
            continue
        row = [name, str(b["num_problems"]), _pct(b["mean_at_n"])]
        row += [_pct(b["pass_at_k"][str(k)]) for k in ks if k > 1]
        gs = b["grade_status"]
        row += [_num(b["avg_tokens"]), _num(b["avg_tokens_correct"]), _num(b["avg_thinking_tokens"]),
                f"{b['avg_soft_share']:.3f}", str(gs["timeout"]), str(gs["parse_error"]),
                str(gs.get("error", 0)), str(gs["no_answer"])]
        lines.append("| " + " | ".join(row) + " |")
    avg = summary.get("average") or {}
    if avg:
        lines += ["", "Average over benchmarks: mean@n " + f"{100 * avg['mean_at_n']:.2f}; "
                  + ", ".join(f"Pass@{k} {100 * v:.2f}" for k, v in avg["pass_at_k"].items())]
        lines += ["", "Original's estimator (\"any of the first k samples\", higher variance): "
                  + ", ".join(f"Pass@{k} {100 * v:.2f}" for k, v in avg["pass_at_k_first_k"].items())]
    return "\n".join(lines) + "\n"


def passk_png(summary: dict[str, Any], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for name, b in summary["benchmarks"].items():
        if not b.get("num_problems"):
            continue
        ks = sorted(int(k) for k in b["pass_at_k"])
        vals = [100 * b["pass_at_k"][str(k)]["value"] for k in ks]
        lo = [100 * b["pass_at_k"][str(k)]["ci_low"] for k in ks]
        hi = [100 * b["pass_at_k"][str(k)]["ci_high"] for k in ks]
        ax.plot(ks, vals, marker="o", label=name)
        ax.fill_between(ks, lo, hi, alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.set_ylabel("Pass@k (%) [unbiased]")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def write_reports(run_path: Path, summary: dict[str, Any], title: str) -> None:
    from soft_thinking.io import atomic_write_json

    atomic_write_json(run_path / "summary.json", summary)
    atomic_write_text(run_path / "summary.md", summary_markdown(summary, title))
    atomic_write_bytes(run_path / "passk.png", passk_png(summary, title))
