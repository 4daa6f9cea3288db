"""What ``--jobs`` buys the quickstart: arms + evaluations of one seed with 1, 2, 3 processes.

    python -m bench.quickstart_jobs [--seed 0] [--jobs 3 2 1] [--out bench/results/quickstart_jobs.json]

Runs the seed's warm start once (``--stage warmstart``), copies it into a fresh folder per
``--jobs`` value and times ``python -m softgrpo.quickstart --jobs J`` there (the warm start is
reused, so only the default run's RL arms and checkpoint evaluations run), one value at a time.
Every value must give byte-identical evaluation files (each process runs one thread, seeded): the
JSON records that check, the seconds and the speed-up over ``--jobs 1``. Exit status 1 when the
results differ.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from bench.warmstart import run_quickstart
from soft_thinking.io import atomic_write_json
from softgrpo.quickstart.pipeline import QuickstartArgs

OUT = Path(__file__).resolve().parent / "results" / "quickstart_jobs.json"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, nargs="+", default=[3, 2, 1])
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    if args.seed < 0 or min(args.jobs) < 1 or 1 not in args.jobs:
        p.error("--seed must be >= 0 and --jobs values >= 1, including 1 (the baseline of the ratios)")
    with tempfile.TemporaryDirectory(prefix="qs-jobs-") as tmp:
        base = Path(tmp) / "warm"
        _, warm_seconds = run_quickstart(base, "--stage", "warmstart", "--seed", str(args.seed))
        start = base / f"seed{args.seed}" / "start"
        seconds: dict[int, float] = {}
        evals: dict[int, list[bytes]] = {}
        for jobs in args.jobs:
            out = Path(tmp) / f"jobs{jobs}"
            shutil.copytree(start, out / f"seed{args.seed}" / "start")
            _, seconds[jobs] = run_quickstart(out, "--seed", str(args.seed), "--jobs", str(jobs))
            evals[jobs] = [(out / f"seed{args.seed}" / f"eval_{c}.json").read_bytes() for c in QuickstartArgs().checkpoints]
            print(json.dumps({"jobs": jobs, "seconds": round(seconds[jobs], 1)}), flush=True)
    identical = all(e == evals[1] for e in evals.values())
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.machine(),
              "cpus": os.cpu_count(), "seed": args.seed, "warm_start_seconds": warm_seconds,
              "what": "arms + evaluations of one seed from a finished warm start (python -m softgrpo.quickstart)",
              "seconds": {str(j): s for j, s in seconds.items()},
              "speedup_over_jobs1": {str(j): seconds[1] / s for j, s in seconds.items()},
              "identical_results": identical}
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
