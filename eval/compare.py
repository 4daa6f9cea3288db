"""``python -m eval compare RUN_A RUN_B``: two arms side by side with CIs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from eval.rundir import RunDirDamaged, RunDirMissing, diff_settings, read_json_object


def _is_metric(m: Any) -> bool:
    return isinstance(m, dict) and all(
        isinstance(m.get(k), (int, float)) and not isinstance(m.get(k), bool) and math.isfinite(m[k])
        for k in ("value", "ci_low", "ci_high"))


def check_summary(summary: dict[str, Any], path: Path) -> None:
    """The parts of ``summary.json`` the table reads; :class:`RunDirDamaged` naming the first bad one."""
    def bad(what: str) -> RunDirDamaged:
        return RunDirDamaged(f"{path}: {what}; rerun `python -m eval run` on the same run folder to rewrite it")

    n = summary.get("num_samples")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise bad(f"num_samples={n!r} is not an integer >= 1")
    benches = summary.get("benchmarks")
    if not isinstance(benches, dict):
        raise bad("'benchmarks' is not an object")
    for name, b in benches.items():
        if not isinstance(b, dict):
            raise bad(f"benchmarks.{name} is not an object")
        if "mean_at_n" in b and not _is_metric(b["mean_at_n"]):
            raise bad(f"benchmarks.{name}.mean_at_n is not {{value, ci_low, ci_high}} numbers")
        pk = b.get("pass_at_k", {})
        if not isinstance(pk, dict) or not all(_is_metric(m) for m in pk.values()):
            raise bad(f"benchmarks.{name}.pass_at_k is not an object of {{value, ci_low, ci_high}} numbers")


def _load(run: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    summ, conf = run / "summary.json", run / "config.json"
    for f in (summ, conf):
        if not f.is_file():
            raise RunDirMissing(f"{f} not found: RUN must be a run directory written by `python -m eval run`")
    summary = read_json_object(summ, "the run's summary")
    check_summary(summary, summ)
    return summary, read_json_object(conf, "the run's settings")


def _cell(m: dict[str, float] | None) -> str:
    if not m:
        return "-"
    return f"{100 * m['value']:6.2f} [{100 * m['ci_low']:5.1f},{100 * m['ci_high']:5.1f}]"


def compare_runs(run_a: Path | str, run_b: Path | str) -> str:
    """Text table (per benchmark: mean@n and Pass@k of both arms, difference) plus warnings."""
    a, b = Path(run_a), Path(run_b)
    (sa, ca), (sb, cb) = _load(a), _load(b)
    out: list[str] = []
    ignore = {"model"}  # the arms are expected to differ in the model
    diffs = diff_settings({k: v for k, v in ca.items() if k not in ignore}, {k: v for k, v in cb.items() if k not in ignore})
    if diffs:
        out.append("WARNING: the two runs used different sampling settings:")
        out += [f"  {d}" for d in diffs]
    if sa["num_samples"] != sb["num_samples"]:
        out.append(f"WARNING: different samples per problem ({sa['num_samples']} vs {sb['num_samples']})")
    out.append(f"A = {a}  ({ca.get('model')})")
    out.append(f"B = {b}  ({cb.get('model')})")
    header = f"{'benchmark':<16}{'metric':<10}{'A':>24}{'B':>24}{'B-A':>9}"
    out += [header, "-" * len(header)]
    for name in [n for n in sa["benchmarks"] if n in sb["benchmarks"]]:
        ba, bb = sa["benchmarks"][name], sb["benchmarks"][name]
        if ba.get("num_problems") != bb.get("num_problems"):
            out.append(f"WARNING: {name}: different problem counts ({ba.get('num_problems')} vs {bb.get('num_problems')})")
        rows = [("mean@n", ba.get("mean_at_n"), bb.get("mean_at_n"))]
        for k in ba.get("pass_at_k", {}):
            if k != "1" and k in bb.get("pass_at_k", {}):
                rows.append((f"Pass@{k}", ba["pass_at_k"][k], bb["pass_at_k"][k]))
        for metric, ma, mb in rows:
            delta = f"{100 * (mb['value'] - ma['value']):+8.2f}" if ma and mb else "       -"
            out.append(f"{name:<16}{metric:<10}{_cell(ma):>24}{_cell(mb):>24}{delta:>9}")
    only = sorted(set(sa["benchmarks"]) ^ set(sb["benchmarks"]))
    if only:
        out.append(f"WARNING: benchmarks in only one run: {only}")
    return "\n".join(out)
