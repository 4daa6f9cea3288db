"""The typed schema of ``python -m eval run``: every value checked before any I/O that writes.

:class:`RunOptions` holds the run's non-sampling values (the sampling ones are
:class:`eval.settings.SamplingSettings`); :meth:`RunOptions.validate` checks types, ranges, enums,
the run name and the device, and :func:`check_run_inputs` the model and the backend, all without
writing anything. A bad value is a :class:`~eval.settings.SettingsError` naming the flag and the
allowed values (one ``error:`` line, exit status 2).

Run names are names, not paths: ``--run-name`` may not contain ``/``, be ``.``/``..``, start with
``.`` or be absolute, so a run folder is always ``<output_dir>/<run_name>``. Relative paths
(``--output-dir``, ``--data-dir``, ``--model``) resolve where the user stands (the working folder).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from eval.benchmarks import ALL_BENCHMARKS
from eval.prompts import DEFAULT_TEMPLATE, check_template
from eval.settings import SettingsError, check_type
from soft_thinking.devices import check_device

BACKENDS_NEEDING_PACKAGE = {"sglang": "sglang", "vllm": "vllm"}  # backend -> the package it imports
DTYPES = ("float32", "bfloat16", "float16")
FLAG_NAMES = {"num_samples": "--num_samples"}  # the original's spelling; the rest are --dashed-names


def flag(name: str) -> str:
    return FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def check_run_name(name: Any) -> str:
    """A run name is one folder name inside ``--output-dir`` (no separators, no ``..``, no leading dot)."""
    allowed = "a folder name without '/', '\\\\', NUL or a leading '.' (e.g. my-run)"
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise SettingsError(f"--run-name={name!r} is invalid: allowed {allowed}")
    if any(sep in name for sep in ("/", "\\", "\0")) or name.startswith(".") or os.path.isabs(name):
        raise SettingsError(f"--run-name={name!r} is invalid: allowed {allowed}")
    return name


@dataclass(frozen=True)
class RunOptions:
    """``eval run`` values besides sampling (field names = flags with ``-`` for ``_``)."""

    model: str
    benchmarks: tuple[str, ...]
    output_dir: str = "results"
    run_name: str | None = None
    data_dir: str | None = None
    hub_revision: str | None = None
    backend: str = "hf"
    prompt_template: str = DEFAULT_TEMPLATE
    think_end: str = "</think>"
    device: str = "cpu"
    threads: int = 1
    dtype: str = "float32"
    limit: int | None = None
    num_samples: int = 32
    grade_workers: int = 2
    grade_timeout: float = 10.0
    n_boot: int = 1000
    require_think_end: bool = False
    trust_remote_code: bool = False

    def validate(self, backends: tuple[str, ...]) -> RunOptions:
        """Types, ranges, enums and names; reads the filesystem only to check existing paths."""
        for f in fields(self):
            if f.name != "benchmarks":
                check_type(flag(f.name), getattr(self, f.name), str(f.type))
        if not self.model.strip():
            raise SettingsError("--model='' is invalid: allowed a model folder, a Hub id or a registered short name")
        bad = [b for b in self.benchmarks if not isinstance(b, str) or b not in ALL_BENCHMARKS]
        if bad or not self.benchmarks:
            raise SettingsError(f"--benchmarks {bad or list(self.benchmarks)} is invalid: allowed a comma list of "
                                f"{list(ALL_BENCHMARKS)}")
        for name, low in (("threads", 1), ("num_samples", 1), ("grade_workers", 1), ("n_boot", 1), ("limit", 1)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise SettingsError(f"{flag(name)}={value!r} is invalid: allowed an integer >= {low}")
        if not self.grade_timeout > 0:
            raise SettingsError(f"--grade-timeout={self.grade_timeout!r} is invalid: allowed a finite number > 0")
        if self.backend not in backends:
            raise SettingsError(f"--backend={self.backend!r} is invalid: allowed {list(backends)}")
        if self.dtype not in DTYPES:
            raise SettingsError(f"--dtype={self.dtype!r} is invalid: allowed {list(DTYPES)}")
        if not self.think_end:
            raise SettingsError("--think-end='' is invalid: allowed a non-empty string (default </think>)")
        check_template(self.prompt_template)
        check_run_name(self.name)
        check_device(self.device)
        out = Path(self.output_dir)
        if out.exists() and not out.is_dir():
            raise SettingsError(f"--output-dir={self.output_dir!r} is invalid: it exists and is not a folder")
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise SettingsError(f"run folder {self.run_dir} exists and is not a folder: choose another --run-name")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise SettingsError(f"--data-dir={self.data_dir!r} is invalid: no such folder")
        return self

    @property
    def name(self) -> str:
        """``--run-name``, else the model's folder name (which must then be a valid name)."""
        if self.run_name is not None:
            return self.run_name
        derived = Path(self.model.rstrip("/")).name
        if not derived or derived in (".", ".."):
            raise SettingsError(f"cannot derive a run name from --model={self.model!r}: pass --run-name NAME")
        return derived

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def check_run_inputs(opts: RunOptions) -> None:
    """The backend's package and the model, read-only (no weights loaded, nothing written)."""
    package = BACKENDS_NEEDING_PACKAGE.get(opts.backend)
    if package is not None and importlib.util.find_spec(package) is None:
        from eval.backends import BackendUnavailable

        raise BackendUnavailable(f"--backend {opts.backend} needs the {package} package (`bash setup.sh --gpu`); "
                                 "use --backend hf (the reference engine) on a machine without it")
    from soft_thinking.engines.hf.model_checks import check_model_source

    check_model_source(opts.model, trust_remote_code=opts.trust_remote_code)
