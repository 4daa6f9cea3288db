"""Mutation check of the core formulas' constants: each mutant must make the existing tests fail.

For each constant (the Gumbel clamp bounds -1.5 and 3, the 1e-6 inside log(p~ + 1e-6), the paper
estimator's -3 floor, the dual clip 3, the advantage epsilon 1e-6, the 10 Philox rounds) the core
package is copied to a temporary folder, that one line is rewritten, and the tests that pin the
constant run in a subprocess with the copy first on ``PYTHONPATH``. Every mutant must be killed
(pytest exit status 1: tests ran and failed), and the same tests must pass on the unmutated copy
(the control: a copy that fails for another reason would kill every mutant vacuously).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "sglang_soft_thinking_pkg" / "soft_thinking"

# (file under soft_thinking/, exact source text, its mutant, the tests that must catch it)
MUTANTS = [
    ("core/config.py", "gumbel_clamp: tuple[float, float] | None = (-1.5, 3.0)",
     "gumbel_clamp: tuple[float, float] | None = (-1.0, 3.0)",
     ["tests/core/test_core_noise.py::test_clamp_and_per_row_noise_factor"]),
    ("core/config.py", "gumbel_clamp: tuple[float, float] | None = (-1.5, 3.0)",
     "gumbel_clamp: tuple[float, float] | None = (-1.5, 2.5)",
     ["tests/core/test_core_noise.py::test_clamp_and_per_row_noise_factor"]),
    ("core/density.py", "LOG_EPS = 1e-6", "LOG_EPS = 1e-5",
     ["tests/core/test_core_logprob.py::test_gumbel_logprob_matches_float64_reference"]),
    ("core/config.py", "logp_floor: float = -3.0", "logp_floor: float = -2.5",
     ["tests/core/test_core_logprob.py::test_floor_is_a_hard_threshold_that_a_rounding_step_can_cross"]),
    ("core/grpo.py", "clip_ratio_c: float = 3.0", "clip_ratio_c: float = 10.0",
     ["tests/core/test_core_grpo.py::test_default_dual_clip_bound_is_verls_3"]),
    ("core/grpo.py", "epsilon: float = 1e-6,", "epsilon: float = 1e-4,",
     ["tests/core/test_core_grpo.py::test_grpo_advantages_hand_reference"]),
    ("core/rng.py", "PHILOX_ROUNDS = 10", "PHILOX_ROUNDS = 7",
     ["tests/core/test_rng.py::test_known_answers"]),
]


def _run(copy_root: Path, tests: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(copy_root), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--no-cov", *tests],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _copy(tmp: Path, rel: str | None = None, old: str = "", new: str = "") -> Path:
    root = tmp / "pkg"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(PKG, root / "soft_thinking", ignore=shutil.ignore_patterns("__pycache__"))
    if rel is not None:
        path = root / "soft_thinking" / rel
        src = path.read_text()
        assert src.count(old) == 1, f"{rel}: the constant {old!r} moved; update MUTANTS"
        path.write_text(src.replace(old, new))
    return root


@pytest.mark.slow
def test_every_core_constant_mutant_is_killed(tmp_path: Path) -> None:
    every = sorted({t for *_, tests in MUTANTS for t in tests})
    control = _run(_copy(tmp_path), every)
    assert control.returncode == 0, control.stdout[-3000:]  # the copy itself is sound
    probe = subprocess.run([sys.executable, "-c", "import soft_thinking; print(soft_thinking.__file__)"],
                           env={**os.environ, "PYTHONPATH": str(tmp_path / "pkg")}, capture_output=True, text=True)
    assert probe.stdout.strip().startswith(str(tmp_path / "pkg"))  # the copy, not the editable install, is imported
    survivors = []
    for rel, old, new, tests in MUTANTS:
        res = _run(_copy(tmp_path, rel, old, new), tests)
        if res.returncode != 1:  # 1 = tests ran and failed; 0 = survived; 2+ = broke for another reason
            survivors.append(f"{rel}: {new!r} -> pytest exit {res.returncode}\n{res.stdout[-1500:]}")
    assert not survivors, "\n".join(survivors)
