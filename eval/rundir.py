"""Run directory layout and resume bookkeeping.

``<output_dir>/<run>/``: ``config.json`` (sampling fingerprint, see :mod:`eval.settings`),
``samples.jsonl`` (one JSON line per sample, appended and flushed as soon as a problem is done,
so a killed run keeps its completed lines), ``summary.json``, ``summary.md``, ``passk.png``
(written atomically: temp file + ``os.replace``), ``.lock`` (:mod:`soft_thinking.runlock`).

:meth:`RunDir.check` reads an existing run without writing: a corrupt ``config.json``, a bad
``samples.jsonl`` line or a sample missing a key is one error naming the file and line, before a
model is loaded. Only a torn last line (a run killed mid-write) is set aside on resume: its bytes
go to ``samples.jsonl.torn``, nothing is deleted. :func:`claim_run_dir` takes the run lock and, if
the run fails before its ``config.json`` exists, removes only what it created itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eval.grading import STATUSES
from soft_thinking.errors import SoftGRPOError
from soft_thinking.io import atomic_write_json
from soft_thinking.runlock import LOCK_NAME, hold_run_lock

SampleKey = tuple[str, int, int]  # (benchmark, problem_id, sample_index)


class RunConfigMismatch(SoftGRPOError, ValueError):
    """Resuming into a run directory whose sampling settings differ."""


class RunDirMissing(SoftGRPOError, FileNotFoundError):
    """A path given as a run directory holds no run."""


class RunDirDamaged(SoftGRPOError, ValueError):
    """A file of a run directory cannot be read; the message names the file (and line)."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


#: Keys every sample line must have, with the check of its value (what resume and the summary read).
SAMPLE_KEYS: dict[str, tuple[Any, str]] = {
    "benchmark": (lambda v: isinstance(v, str), "a string"),
    "problem_id": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "sample_index": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "correct": (lambda v: isinstance(v, bool), "true or false"),
    "grade_status": (lambda v: v in STATUSES, f"one of {list(STATUSES)}"),
    "text": (lambda v: isinstance(v, str), "a string"),
    "num_tokens": (_is_int, "an integer"),
    "num_thinking_tokens": (_is_int, "an integer"),
    "soft_share": (_is_num, "a number"),
}


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; :class:`RunDirDamaged` naming it when it is not one."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunDirDamaged(f"{path} ({what}) is not valid JSON ({exc}); restore it or use a new run folder") from exc
    if not isinstance(data, dict):
        raise RunDirDamaged(f"{path} ({what}) is not a JSON object; restore it or use a new run folder")
    return data


def parse_sample_line(path: Path, lineno: int, line: str) -> dict[str, Any]:
    """One ``samples.jsonl`` record, checked (:data:`SAMPLE_KEYS`); :class:`RunDirDamaged` naming the line."""
    where = f"{path}:{lineno}"
    try:
        rec = json.loads(line)
    except ValueError as exc:
        raise RunDirDamaged(f"{where} is not valid JSON ({exc}); fix or remove that line, or use a new --run-name") from exc
    if not isinstance(rec, dict):
        raise RunDirDamaged(f"{where} is not a JSON object; fix or remove that line, or use a new --run-name")
    for key, (ok, allowed) in SAMPLE_KEYS.items():
        if key not in rec:
            raise RunDirDamaged(f"{where}: sample has no {key!r}; fix or remove that line, or use a new --run-name")
        if not ok(rec[key]):
            raise RunDirDamaged(f"{where}: {key}={rec[key]!r} is invalid (allowed {allowed}); fix or remove that line")
    return rec


@contextmanager
def claim_run_dir(path: Path) -> Iterator[Path]:
    """Hold the run lock of ``path`` (:func:`soft_thinking.runlock.hold_run_lock`) for the block.

    If the block raises before ``config.json`` exists, the folders this call created (the run
    folder, missing parents) and the lock file are removed again, so a failed start leaves the
    output folder as it was; an existing folder keeps everything it had.
    """
    path = Path(path)
    created: list[Path] = []
    p = path
    while not p.exists():
        created.append(p)
        if p.parent == p:
            break
        p = p.parent
    with hold_run_lock(path):
        try:
            yield path
        except BaseException:
            if created and not (path / "config.json").exists():
                if sorted(x.name for x in path.iterdir()) == [LOCK_NAME]:
                    (path / LOCK_NAME).unlink()
                for folder in created:  # innermost first
                    try:
                        folder.rmdir()
                    except OSError:  # not empty: someone else's files; keep them
                        break
            raise


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

    def check(self, fingerprint: dict[str, Any], samples: bool = True) -> None:
        """Read-only: an existing run's ``config.json`` matches ``fingerprint`` and (``samples``) every
        line of its ``samples.jsonl`` parses."""
        if not self.path.exists():
            return
        if not self.path.is_dir():
            raise RunDirDamaged(f"run folder {self.path} exists and is not a folder; choose another --run-name")
        if self.config_path.exists():
            self._check_fingerprint(fingerprint)
        elif self.samples_path.exists():
            raise RunDirDamaged(f"{self.samples_path} exists but {self.config_path} does not: the settings of these "
                                "samples are unknown; restore config.json or use a new --run-name")
        if samples:
            self.load_samples(set_aside_torn=False)

    def _check_fingerprint(self, fingerprint: dict[str, Any]) -> None:
        old = read_json_object(self.config_path, "the run's settings")
        diffs = diff_settings(old, json.loads(json.dumps(fingerprint)))
        if diffs:
            raise RunConfigMismatch(
                f"run directory {self.path} was created with different sampling settings; refusing to "
                f"resume into it. Differences (stored != requested): {'; '.join(diffs)}. "
                "Use a new --run-name or the original settings."
            )

    def init(self, fingerprint: dict[str, Any]) -> None:
        """Create the run (write ``config.json``) or check that a resume uses the same settings."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.config_path.exists():
            self._check_fingerprint(fingerprint)
        else:
            atomic_write_json(self.config_path, fingerprint)

    def load_samples(self, set_aside_torn: bool = True) -> dict[SampleKey, dict[str, Any]]:
        """Completed samples by key (every line checked, :func:`parse_sample_line`).

        A torn last line (no newline: the run was killed mid-write) is not a sample; with
        ``set_aside_torn`` its bytes are appended to ``samples.jsonl.torn`` and cut from the file.
        """
        if not self.samples_path.exists():
            return {}
        raw = self.samples_path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            cut = raw.rfind(b"\n") + 1
            if set_aside_torn:
                with self.samples_path.with_name(self.samples_path.name + ".torn").open("ab") as fh:
                    fh.write(raw[cut:] + b"\n")
                with self.samples_path.open("r+b") as fh:
                    fh.truncate(cut)
            raw = raw[:cut]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RunDirDamaged(f"{self.samples_path} is not UTF-8 text ({exc}); restore it or use a new --run-name") from exc
        out: dict[SampleKey, dict[str, Any]] = {}
        for lineno, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            rec = parse_sample_line(self.samples_path, lineno, line)
            out[(rec["benchmark"], rec["problem_id"], rec["sample_index"])] = rec
        return out

    def append_samples(self, records: Iterable[dict[str, Any]]) -> None:
        """Append records as JSON lines and flush (+fsync) so completed work survives a kill."""
        with self.samples_path.open("a", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
