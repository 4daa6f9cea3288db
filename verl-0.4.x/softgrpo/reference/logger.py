"""Metrics to the console, ``metrics.jsonl`` and, when asked, TensorBoard and Weights & Biases."""

from __future__ import annotations

import json
import math
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
            # drop lines beyond the resume point so a resumed run does not log a step twice
            kept = [ln for ln in self.path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
            atomic_write_text(self.path, "".join(k + "\n" for k in kept))
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


def _fmt(v: float) -> str:
    if v == 0 or math.isnan(v):
        return str(v)
    return f"{v:.3g}" if abs(v) >= 1e-3 else f"{v:.2e}"
