"""The GPU check's command-line check (bench/gpu_check.py): ``python -m softgrpo.train`` on the device, resumed."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.gpu_check_lib import Ctx, check, require

ROOT = Path(__file__).resolve().parent.parent


def _train(ctx: Ctx, out: str, steps: int) -> subprocess.CompletedProcess:
    """The reference trainer's CLI on the quickstart config, small: a tiny random Qwen2, 16 rows, n=4."""
    overrides = [
        f"trainer.device={ctx.device}", f"trainer.default_local_dir={out}", f"trainer.total_training_steps={steps}",
        "trainer.save_freq=2", "trainer.logger=[jsonl]", "trainer.progress=false", "trainer.arm=softgrpo",
        "data.train_size=16", "data.train_batch_size=4", f"data.max_response_length={8 if ctx.quick else 32}",
        "actor_rollout_ref.actor.ppo_mini_batch_size=2", "actor_rollout_ref.actor.ppo_micro_batch_size=8",
        "custom_reward_function.workers=1",
    ]
    cmd = [sys.executable, "-m", "softgrpo.train", "--config", str(ROOT / "configs" / "quickstart.yaml"), *overrides]
    # the child finds the packages as this process did (an install, or gpu_check.sh's PYTHONPATH)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)


@check
def train_cli_resume(ctx: Ctx) -> dict[str, Any]:
    """``python -m softgrpo.train`` on the device: 2 steps with a checkpoint at step 2, then the same command
    with 3 steps resumes from it (model, optimizer and sampler state loaded onto the device) and runs step 3."""
    numbers: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        first = _train(ctx, tmp, 2)
        numbers["first_s"] = time.perf_counter() - t0
        resumed = _train(ctx, tmp, 3) if first.returncode == 0 else None
        lines = [json.loads(ln) for ln in (Path(tmp) / "metrics.jsonl").read_text().splitlines()
                 if ln.strip()] if (Path(tmp) / "metrics.jsonl").is_file() else []
    numbers["first_rc"] = first.returncode
    numbers["resume_rc"] = None if resumed is None else resumed.returncode
    numbers["resumed_message"] = resumed is not None and "resumed from" in resumed.stdout
    numbers["steps_logged"] = [int(ln["step"]) for ln in lines]
    numbers["replay_parity_max"] = max((ln["replay/max_abs_diff"] for ln in lines), default=None)
    numbers["first_minibatch_log_ratio_max"] = max((ln["actor/first_minibatch_max_abs_log_ratio"] for ln in lines),
                                                   default=None)
    for name, proc in (("first", first), ("resume", resumed)):
        if proc is not None and proc.returncode != 0:
            numbers[f"{name}_stderr_tail"] = proc.stderr[-1500:]
    require(first.returncode == 0 and numbers["resume_rc"] == 0 and numbers["resumed_message"]
            and numbers["steps_logged"] == [1, 2, 3] and numbers["replay_parity_max"] is not None
            and numbers["replay_parity_max"] <= 1e-4 and numbers["first_minibatch_log_ratio_max"] == 0.0,
            "trainer CLI on the device: a run failed, did not resume, or lost replay parity", numbers)
    return numbers
