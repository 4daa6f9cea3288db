"""Metrics to the console, ``metrics.jsonl`` and, when asked, TensorBoard and Weights & Biases.

``metrics.jsonl`` is appended, one JSON line per step, and never loses a line. When a run starts:

- resuming from step ``S``: lines of steps after ``S`` (logged after the last checkpoint; those
  steps run again) move to ``metrics.superseded.jsonl``, and a torn last line (a kill during a
  write) is dropped with a warning; a damaged line elsewhere (not a JSON record with a step) moves
  to ``metrics.damaged.jsonl`` with a warning;
- starting fresh in a folder that already holds a ``metrics.jsonl`` (no checkpoint to resume):
  the old file is renamed ``metrics.<n>.jsonl`` with a warning, never truncated.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from soft_thinking.io import atomic_write_text

CONSOLE_KEYS = (
    "reward/mean", "train/accuracy", "response/length_mean", "response/thinking_length_mean", "soft/step_share",
    "actor/clipfrac", "actor/kl_ref", "actor/grad_norm", "replay/max_abs_diff", "timing/step_s",
)


class MetricsLogger:
    def __init__(self, out_dir: str | Path, backends: list[str], project: str, name: str, config: dict[str, Any],
                 resume_step: int = 0) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.backends = list(backends)
        self.path = self.out_dir / "metrics.jsonl"
        if "jsonl" in self.backends and self.path.exists():
            prepare_metrics_file(self.path, resume_step)
        self._tb = None
        self._wandb = None
        if "tensorboard" in self.backends:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.out_dir / "tensorboard"))
        if "wandb" in self.backends:
            import wandb

            self._wandb = wandb.init(project=project, name=name, config=config, dir=str(self.out_dir), resume="allow")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        record = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        if "jsonl" in self.backends:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        if "console" in self.backends:
            shown = " ".join(f"{k.split('/')[-1]}={_fmt(metrics[k])}" for k in CONSOLE_KEYS if k in metrics)
            print(f"[step {step}] {shown}", flush=True)
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(metrics, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def prepare_metrics_file(path: Path, resume_step: int) -> None:
    """Make ``path`` hold exactly the steps ``<= resume_step`` without losing a line (module doc)."""
    if resume_step == 0:
        if path.stat().st_size:
            n = 1
            while (old := path.with_name(f"metrics.{n}.jsonl")).exists():
                n += 1
            path.rename(old)
            warnings.warn(f"{path} belonged to an earlier run with no checkpoint here; moved to {old}", stacklevel=3)
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    kept, later, damaged = [], [], []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        step = _step_of(line)
        if step is None:
            if i == len(lines) - 1:  # a kill during the last write
                warnings.warn(f"{path}: dropped a torn last line ({len(line)} characters)", stacklevel=3)
                later.append(line)
            else:  # damaged in the middle (an editor, a disk): kept aside, never deleted
                warnings.warn(f"{path}: line {i + 1} is not a metrics record; moved to metrics.damaged.jsonl",
                              stacklevel=3)
                damaged.append(line)
            continue
        (kept if step <= resume_step else later).append(line)
    for name, aside in (("metrics.superseded.jsonl", later), ("metrics.damaged.jsonl", damaged)):
        if aside:
            with path.with_name(name).open("a", encoding="utf-8") as f:
                f.write("".join(ln + "\n" for ln in aside))
    if later or damaged or not text.endswith("\n"):
        atomic_write_text(path, "".join(k + "\n" for k in kept))


def _step_of(line: str) -> int | None:
    """The step of a metrics line, or None when the line is not a JSON object with an integer step."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _fmt(v: float) -> str:
    if v == 0 or math.isnan(v):
        return str(v)
    return f"{v:.3g}" if abs(v) >= 1e-3 else f"{v:.2e}"
