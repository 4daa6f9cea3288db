"""The embedded default's wall time, an earlier commit against this tree, side by side on one machine.

    python -m bench.quickstart_speed [--baseline-ref HEAD~1] [--repeats 1] [--seed 0]
                                     [--out bench/results/quickstart_speed.json] [-- extra quickstart args]

The baseline is ``git archive <ref>`` unpacked into a temporary folder (the shared repository's
worktree list is left alone) and run from there with ``PYTHONPATH`` pointing at its three packages
(``PYTHONPATH`` entries and the working folder win over the venv's editable install, which points
at this tree); the candidate is this tree, run the same way. Each run is the whole default from
nothing (``python -m softgrpo.quickstart --seed S --out <fresh folder>``: warm start, arms,
evaluations), one at a time, in the order baseline, candidate, candidate, baseline, ... so a drift
of the machine's speed falls on both. The JSON records every run's seconds and stages, the ratio
of the medians (baseline / candidate: > 1 is faster), ``os.getloadavg`` around each run, and whether
the checkpoints both ran (start, grpo, softgrpo by default) gave byte-identical evaluation files; the
SHA-256 of each side's first warm-start model and evaluations let another clone's run be checked against them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from io import BytesIO
from pathlib import Path
from typing import Any

from soft_thinking.io import atomic_write_json

REPO = Path(__file__).resolve().parents[1]
OUT = Path(__file__).resolve().parent / "results" / "quickstart_speed.json"
PACKAGE_DIRS = ("sglang_soft_thinking_pkg", "verl-0.4.x", ".")


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, check=True, capture_output=True, text=True).stdout.strip()


def unpack(ref: str, dest: Path) -> str:
    """``git archive ref`` into ``dest``; returns the full commit hash."""
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    data = subprocess.run(["git", "archive", commit], cwd=REPO, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return commit


def run_default(tree: Path, out: Path, seed: int, extra: list[str]) -> dict[str, Any]:
    """One whole default run of the code in ``tree``: wall seconds, its summary's stage times, the load."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str((tree / d).resolve()) for d in PACKAGE_DIRS))
    cmd = [sys.executable, "-m", "softgrpo.quickstart", "--seed", str(seed), "--out", str(out), *extra,
           "trainer.progress=false"]
    load = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} (in {tree}) exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    run = summary["runs"][0]
    return {"seconds": seconds, "load_before": load, "load_after": os.getloadavg(),
            "stages": run["wall_seconds"], "warm_start": {k: run["sft"][k] for k in ("steps", "greedy_accuracy")},
            "checkpoints": sorted(run["eval"]), "out": str(out)}


def sha256s(out: Path, seed: int, checkpoints: list[str]) -> dict[str, str]:
    """SHA-256 of a run's warm-start model and evaluation files: compare them with another clone's run."""
    files = {"start/model.safetensors": out / f"seed{seed}" / "start" / "model.safetensors",
             **{f"eval_{c}.json": out / f"seed{seed}" / f"eval_{c}.json" for c in checkpoints}}
    return {name: hashlib.sha256(f.read_bytes()).hexdigest() for name, f in files.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline-ref", default="HEAD~1", help="git ref of the baseline (default: the previous commit)")
    p.add_argument("--repeats", type=int, default=1, help="runs of each side (alternating order)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--note", default="", help="free text stored in the JSON (e.g. how quiet the machine was)")
    p.add_argument("extra", nargs="*", help="extra arguments for both quickstarts (after --), e.g. --fast")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.seed < 0:
        p.error("--repeats must be >= 1 and --seed >= 0")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    candidate = git("rev-parse", "HEAD") + ("+uncommitted" if dirty else "")
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "candidate": []}
    with tempfile.TemporaryDirectory(prefix="qs-speed-") as tmp:
        base_tree = Path(tmp) / "baseline"
        base_commit = unpack(args.baseline_ref, base_tree)
        trees = {"baseline": base_tree, "candidate": REPO}
        order = [side for i in range(args.repeats)
                 for side in (("baseline", "candidate") if i % 2 == 0 else ("candidate", "baseline"))]
        for i, side in enumerate(order):
            res = run_default(trees[side], Path(tmp) / f"run{i}_{side}", args.seed, args.extra)
            runs[side].append(res)
            print(json.dumps({"side": side, "seconds": round(res["seconds"], 1), "stages": res["stages"]}), flush=True)
        first = {side: Path(r[0]["out"]) for side, r in runs.items()}
        common = [c for c in runs["candidate"][0]["checkpoints"] if c in runs["baseline"][0]["checkpoints"]]
        digests = {side: sha256s(first[side], args.seed, runs[side][0]["checkpoints"]) for side in first}
    identical = {c: digests["baseline"][f"eval_{c}.json"] == digests["candidate"][f"eval_{c}.json"] for c in common}
    same_warm_start = digests["baseline"]["start/model.safetensors"] == digests["candidate"]["start/model.safetensors"]
    med = {side: statistics.median(r["seconds"] for r in rs) for side, rs in runs.items()}
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.machine(),
        "cpus": os.cpu_count(), "note": args.note, "seed": args.seed, "extra_args": args.extra,
        "command": "python -m bench.quickstart_speed " + " ".join(argv if argv is not None else sys.argv[1:]),
        "baseline": {"ref": args.baseline_ref, "commit": base_commit, "runs": runs["baseline"]},
        "candidate": {"commit": candidate, "runs": runs["candidate"]},
        "median_seconds": med, "speedup": med["baseline"] / med["candidate"],
        "identical_warm_start_model": same_warm_start, "identical_evaluations": identical,
        "sha256_first_run": digests,
    }
    for rs in runs.values():
        for r in rs:
            r.pop("out")
    atomic_write_json(args.out, result)
    print(json.dumps({"median_seconds": med, "speedup": round(result["speedup"], 3),
                      "identical_evaluations": identical, "identical_warm_start_model": same_warm_start}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
