"""Robustness of the quickstart's warm start over seeds and CPU thread counts.

    python -m bench.warmstart [--seeds 6] [--threads 1 2] [--out bench/results/warmstart.json]

Runs ``python -m softgrpo.quickstart --stage warmstart --seed S --threads T`` for every pair in a
fresh process, each into its own temporary folder, and records steps, held-out greedy accuracy and
seconds per run, with the median and the worst. One thread count at a time; by default its runs go
side by side only as far as the cores allow (``cpus // threads`` at a time: two 1-thread runs, one
2-thread run on 2 cores), so runs never compete for a core. ``--parallel N`` forces N at a time:
the step counts stay the same (they depend on seed and thread count only) but the seconds then
include the contention, and the JSON records the parallelism of each run.
Exit status 1 when any run missed the target (the JSON is still written, with ``"all_reached": false``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path

import torch

from soft_thinking.io import atomic_write_json
from softgrpo.reference.sft import SFTConfig

OUT = Path(__file__).resolve().parent / "results" / "warmstart.json"


def run_quickstart(out: str | Path, *args: str, ok: tuple[int, ...] = (0,)) -> tuple[subprocess.CompletedProcess, float]:
    """``python -m softgrpo.quickstart --out OUT ARGS`` in a fresh process: (the process, its seconds).

    Raises with the end of its stderr when the exit status is not in ``ok``.
    """
    cmd = [sys.executable, "-m", "softgrpo.quickstart", "--out", str(out), *args, "trainer.progress=false"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode not in ok:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc, seconds


def run_one(seed: int, threads: int, extra: list[str], side_by_side: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="warmstart-") as tmp:
        proc, wall = run_quickstart(tmp, "--stage", "warmstart", "--seed", str(seed), "--threads", str(threads),
                                    *extra, ok=(0, 2))
    if proc.returncode == 2:  # WarmStartFailed: the target was missed
        return {"seed": seed, "threads": threads, "reached": False, "error": proc.stderr.strip().splitlines()[-1],
                "wall_seconds": wall, "side_by_side": side_by_side}
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**info, "reached": True, "wall_seconds": wall, "side_by_side": side_by_side}


def write_result(args: argparse.Namespace, runs: list[dict], total: int) -> dict:
    """Summarize the finished runs (median and worst per thread count) and write the JSON atomically."""
    ok = [r for r in runs if r["reached"]]
    summary = {}
    for threads in args.threads:
        rs = [r for r in ok if r["threads"] == threads]
        if rs:
            steps, secs = [r["steps"] for r in rs], [r["seconds"] for r in rs]
            summary[f"threads={threads}"] = {"runs": len(rs), "steps_median": statistics.median(steps),
                                             "steps_worst": max(steps), "seconds_median": statistics.median(secs),
                                             "seconds_worst": max(secs),
                                             "accuracy_min": min(r["greedy_accuracy"] for r in rs)}
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.machine(),
              "cpus": os.cpu_count(), "torch": torch.__version__, "recipe": SFTConfig().__dict__,
              "extra_args": args.extra, "parallel": args.parallel, "note": args.note,
              "complete": len(runs) == total, "runs_planned": total,
              "all_reached": len(ok) == len(runs), "summary": summary, "runs": runs}
    atomic_write_json(args.out, result)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--parallel", type=int, default=0,
                   help="runs at a time; 0 (default): cpus // threads, so runs never share a core")
    p.add_argument("--note", default="", help="recorded in the JSON (e.g. what else loaded the machine)")
    p.add_argument("extra", nargs="*", help="more quickstart arguments (e.g. --sft-max-steps 2000)")
    args = p.parse_args(argv)
    if args.seeds < 1 or args.parallel < 0 or min(args.threads) < 1:
        p.error("--seeds and --threads must be >= 1, --parallel >= 0")
    total = args.seeds * len(args.threads)
    runs: list[dict] = []
    for threads in args.threads:  # one wave per thread count
        side_by_side = args.parallel or max(1, (os.cpu_count() or 1) // threads)
        with ThreadPoolExecutor(max_workers=side_by_side) as pool:
            futures = [pool.submit(run_one, seed, threads, args.extra, side_by_side) for seed in range(args.seeds)]
            for future in as_completed(futures):
                runs.append(future.result())
                print(json.dumps(runs[-1]), flush=True)
                result = write_result(args, runs, total)  # after every run: a kill keeps what finished
    print(json.dumps(result["summary"], indent=2))
    return 0 if result["all_reached"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
