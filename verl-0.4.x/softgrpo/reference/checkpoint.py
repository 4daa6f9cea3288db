"""Atomic, verified checkpoints: write into ``<dir>/.tmp-global_step_N``, add a manifest, rename.

A checkpoint folder ``global_step_N`` holds the model (safetensors + config), the optimizer,
the LR scheduler, the RNG states, the step, the data cursor, the config and ``manifest.json``
(size and sha256 of every other file, written last). A folder is only ever visible under its final
name once complete (``os.replace`` of a directory is atomic). ``resume: auto`` takes the newest
checkpoint whose files match its manifest (:func:`find_resume_checkpoint`); a newer damaged one
(truncated, edited, half-copied) is skipped with its reason and renamed ``global_step_N.damaged``,
never deleted. The trainer state is loaded with ``torch.load(weights_only=True)``: a crafted file
cannot run code. :func:`check_resume_config` then compares the checkpoint's config with the current
one: a resume whose arm, model, data, rollout, loss or optimizer settings differ is refused naming
the keys, unless ``trainer.resume_allow_config_change=true``.
"""

from __future__ import annotations

import hashlib
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
MANIFEST = "manifest.json"
REQUIRED_FILES = ("model/model.safetensors", "model/config.json", "trainer_state.pt", "config.json")

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
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ResumeError(f"{path} is unreadable ({exc})") from exc
    diffs = config_differences(saved, current)
    if diffs and not allow_change:
        raise ResumeError(
            f"refusing to resume from {ckpt}: the config differs from the checkpoint's in "
            f"{len(diffs)} key(s) (saved != now): {'; '.join(diffs)}. Use another trainer.default_local_dir, "
            "the checkpoint's values, or trainer.resume_allow_config_change=true to continue anyway"
        )
    return diffs


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as plain values and tensors (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": (str(name), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                       float(cached)),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder: Path) -> None:
    """``manifest.json``: size and sha256 of every file of the checkpoint (written last)."""
    files = {p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps({"format": 1, "files": files}, indent=1))


def verify_checkpoint(folder: str | Path) -> str | None:
    """``None`` when every file of ``folder`` matches its manifest, else the reason it cannot be used."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
        entries = [(rel, int(e["size"]), str(e["sha256"])) for rel, e in files.items()]
    except FileNotFoundError:
        return f"no {MANIFEST} (written by an older version, or the save was interrupted)"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"{MANIFEST} is unreadable ({type(exc).__name__}: {exc})"
    missing = [r for r in REQUIRED_FILES if r not in files]
    if missing:
        return f"{MANIFEST} lists no {missing}"
    for rel, size, digest in entries:
        path = folder / rel
        if not path.is_file():
            return f"{rel} is missing"
        if path.stat().st_size != size:
            return f"{rel} has {path.stat().st_size} bytes, the manifest says {size} (truncated or replaced)"
        if _sha256(path) != digest:
            return f"{rel} does not match its sha256 in {MANIFEST} (damaged)"
    return None


def save_checkpoint(root: str | Path, step: int, model: Any, tokenizer: Any, optimizer: Any, scheduler: Any,
                    trainer_state: dict[str, Any], config: dict[str, Any], keep: int = 2) -> Path:
    """Write ``root/global_step_{step}`` atomically with its manifest; keep the newest ``keep`` checkpoints.

    A folder already under the final name (a step saved again after a resume from an older one) is
    renamed aside, never deleted.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"global_step_{step}"
    tmp = root / f".tmp-global_step_{step}"
    if tmp.exists():  # our own interrupted save: never a complete checkpoint
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
    write_manifest(tmp)
    if final.exists():
        set_aside(final, "replaced")
    os.replace(tmp, final)
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old)
    return final


def set_aside(folder: Path, why: str) -> Path:
    """Rename ``folder`` to ``<name>.<why>[-n]`` (out of the resume order, nothing deleted)."""
    n, target = 0, folder.with_name(f"{folder.name}.{why}")
    while target.exists():
        n += 1
        target = folder.with_name(f"{folder.name}.{why}-{n}")
    os.replace(folder, target)
    return target


def list_checkpoints(root: str | Path) -> list[Path]:
    """Checkpoint folders under ``root`` (complete by name; see :func:`verify_checkpoint`), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | Path) -> Path | None:
    ckpts = list_checkpoints(root)
    return ckpts[-1] if ckpts else None


def find_resume_checkpoint(root: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint that verifies, and the newer ones skipped with their reasons.

    Raises :class:`ResumeError` when checkpoints exist and none verifies (starting over would
    silently discard the run).
    """
    skipped: list[tuple[Path, str]] = []
    for ckpt in reversed(list_checkpoints(root)):
        reason = verify_checkpoint(ckpt)
        if reason is None:
            return ckpt, skipped
        skipped.append((ckpt, reason))
    if skipped:
        raise ResumeError(
            f"no checkpoint under {root} verifies: " + "; ".join(f"{p.name}: {r}" for p, r in skipped)
            + ". Nothing was changed; move them away to start over, or use another trainer.default_local_dir")
    return None, skipped


def load_trainer_state(path: str | Path) -> dict[str, Any]:
    """``trainer_state.pt`` with ``weights_only=True``: tensors and plain values only, never code."""
    file = Path(path) / "trainer_state.pt"
    try:
        state = torch.load(file, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is one named, unrecoverable file
        raise ResumeError(f"{file} cannot be loaded safely ({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc
    if not isinstance(state, dict) or not {"optimizer", "scheduler", "rng", "global_step", "sampler"} <= set(state):
        raise ResumeError(f"{file} is not a trainer state (keys {sorted(state) if isinstance(state, dict) else state!r})")
    return state
