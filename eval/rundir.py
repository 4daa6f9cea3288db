"""Run directory layout and resume bookkeeping.

``<output_dir>/<run>/``: ``config.json`` (sampling fingerprint, see :mod:`eval.settings`),
``samples.jsonl`` (one JSON line per sample, appended and flushed as soon as a problem is done,
so a killed run keeps its completed lines), ``summary.json``, ``summary.md``, ``passk.png``
(written atomically: temp file + ``os.replace``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from soft_thinking.errors import SoftGRPOError
from soft_thinking.io import atomic_write_json

SampleKey = tuple[str, int, int]  # (benchmark, problem_id, sample_index)


class RunConfigMismatch(SoftGRPOError, ValueError):
    """Resuming into a run directory whose sampling settings differ."""


class RunDirMissing(SoftGRPOError, FileNotFoundError):
    """A path given as a run directory holds no run."""


def diff_settings(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Keys (dotted) whose values differ between two nested dicts."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff_settings(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} != {vb!r}")
    return out


class RunDir:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.samples_path = self.path / "samples.jsonl"

    def init(self, fingerprint: dict[str, Any]) -> None:
        """Create the run (write ``config.json``) or check that a resume uses the same settings."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.config_path.exists():
            old = json.loads(self.config_path.read_text(encoding="utf-8"))
            diffs = diff_settings(old, json.loads(json.dumps(fingerprint)))
            if diffs:
                raise RunConfigMismatch(
                    f"run directory {self.path} was created with different sampling settings; refusing to "
                    f"resume into it. Differences (stored != requested): {'; '.join(diffs)}. "
                    "Use a new --run-name or the original settings."
                )
        else:
            atomic_write_json(self.config_path, fingerprint)

    def load_samples(self) -> dict[SampleKey, dict[str, Any]]:
        """Completed samples by key. A partial last line (killed mid-write) is cut off the file."""
        if not self.samples_path.exists():
            return {}
        raw = self.samples_path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            cut = raw.rfind(b"\n") + 1
            with self.samples_path.open("r+b") as fh:
                fh.truncate(cut)
            raw = raw[:cut]
        out: dict[SampleKey, dict[str, Any]] = {}
        for lineno, line in enumerate(raw.decode("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{self.samples_path}:{lineno} is not valid JSON ({exc})") from exc
            out[(rec["benchmark"], int(rec["problem_id"]), int(rec["sample_index"]))] = rec
        return out

    def append_samples(self, records: Iterable[dict[str, Any]]) -> None:
        """Append records as JSON lines and flush (+fsync) so completed work survives a kill."""
        with self.samples_path.open("a", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
