"""Atomic checkpoints: write everything into ``<dir>/.tmp-global_step_N`` then rename it.

A checkpoint folder ``global_step_N`` holds the model (safetensors + config), the optimizer,
the LR scheduler, the RNG states, the step, the data cursor and the config. A folder is only
ever visible under its final name once complete (``os.replace`` of a directory is atomic), so an
interrupted write leaves the previous checkpoint as the latest loadable one. ``resume: auto``
picks the highest complete step, after :func:`check_resume_config` compared the checkpoint's config
with the current one: a resume whose arm, model, data, rollout, loss or optimizer settings differ
is refused naming the keys, unless ``trainer.resume_allow_config_change=true``.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from soft_thinking.errors import SoftGRPOError

STEP_DIR = re.compile(r"^global_step_(\d+)$")

# keys that may change between a run and its resume (how long, how often, where to log); every
# other key (arm, model, data, rollout, soft_thinking, loss, optimizer, reward, seed) must match
RESUMABLE_CHANGES = (
    "trainer.total_training_steps", "trainer.stop_after_steps", "trainer.save_freq", "trainer.test_freq",
    "trainer.logger", "trainer.project_name", "trainer.experiment_name", "trainer.progress",
    "trainer.num_threads", "trainer.device", "trainer.keep_checkpoints", "trainer.resume_mode",
    "trainer.default_local_dir", "trainer.resume_allow_config_change", "data.val_files", "data.val_size",
    "custom_reward_function.timeout_s", "custom_reward_function.workers",
    "actor_rollout_ref.rollout.val_kwargs",
)


class ResumeError(SoftGRPOError):
    """A checkpoint that must not be resumed with the current config (or does not fit the model)."""


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict) or (prefix and not d):
        return {prefix.rstrip("."): d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}."))
    return out


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"key: saved != current"`` for every key outside :data:`RESUMABLE_CHANGES` that differs."""
    a = _flatten(json.loads(json.dumps(saved, default=str)))
    b = _flatten(json.loads(json.dumps(current, default=str)))
    allowed = tuple(RESUMABLE_CHANGES)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key.startswith(allowed) or a.get(key) == b.get(key):
            continue
        diffs.append(f"{key}: {a.get(key, '<unset>')!r} != {b.get(key, '<unset>')!r}")
    return diffs


def check_resume_config(ckpt: str | Path, current: dict[str, Any], allow_change: bool = False) -> list[str]:
    """Refuse (:class:`ResumeError`) to resume ``ckpt`` with a config whose essential keys differ.

    Returns the differences that ``allow_change`` let through (for a warning).
    """
    path = Path(ckpt) / "config.json"
    if not path.is_file():
        raise ResumeError(f"checkpoint {ckpt} has no config.json; cannot check that it belongs to this run")
    diffs = config_differences(json.loads(path.read_text()), current)
    if diffs and not allow_change:
        raise ResumeError(
            f"refusing to resume from {ckpt}: the config differs from the checkpoint's in "
            f"{len(diffs)} key(s) (saved != now): {'; '.join(diffs)}. Use another trainer.default_local_dir, "
            "the checkpoint's values, or trainer.resume_allow_config_change=true to continue anyway"
        )
    return diffs


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(root: str | Path, step: int, model: Any, tokenizer: Any, optimizer: Any, scheduler: Any,
                    trainer_state: dict[str, Any], config: dict[str, Any], keep: int = 2) -> Path:
    """Write ``root/global_step_{step}`` atomically; keep the newest ``keep`` checkpoints."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"global_step_{step}"
    tmp = root / f".tmp-global_step_{step}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    model.save_pretrained(tmp / "model", safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp / "model")
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state(), **trainer_state},
        tmp / "trainer_state.pt",
    )
    (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old)
    return final


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | Path) -> Path | None:
    ckpts = list_checkpoints(root)
    return ckpts[-1] if ckpts else None


def load_trainer_state(path: str | Path) -> dict[str, Any]:
    return torch.load(Path(path) / "trainer_state.pt", weights_only=False)
