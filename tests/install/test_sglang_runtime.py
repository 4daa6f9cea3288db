"""sglang 0.5.12, installed ``--no-deps`` as setup.sh --gpu does, run for real next to transformers 5.9.0 (CPU).

A throwaway ``pip install --target`` of the sglang 0.5.12 wheel beside this venv (torch CPU, transformers 5.9.0).
What loads on the CPU stack and what needs CUDA libraries is asserted exactly:

* ``import sglang`` (and every ``sglang.srt`` module our hooks target) stops at ``sglang/srt/utils/common.py:90``,
  ``from torchvision.io import decode_jpeg``: PyPI's torchvision is CUDA-linked (its ``_C.so`` needs
  ``libc10_cuda.so``/``libtorch_cuda.so``), so with torch's CPU build it cannot load. Those modules are GPU-only here.
* The package's own ``__init__`` skipped, the rest is real: sglang's plug-in loader finds our entry point and
  applies our hooks; ``SamplingParams.verify`` (a hook target that loads) then rejects a bad soft request and
  passes a good one; the model-config modules that do not import ``sglang.srt.utils`` load, and every
  ``transformers.PretrainedConfig`` subclass in them builds with transformers 5.9.0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sglang_wheels import pip_download  # tests/sglang_wheels.py

PROBE = r'''
import importlib, inspect, json, logging, os, pkgutil, sys, traceback, types
from pathlib import Path
root = Path(sys.argv[1]) / "sglang"
out = {}
try:
    import sglang  # noqa: F401
    out["import_sglang"] = "ok"
except ModuleNotFoundError as exc:
    frame = [f for f in traceback.extract_tb(exc.__traceback__) if "/sglang/" in f.filename][-1]
    out["import_sglang"] = [exc.name, frame.filename.split("/sglang/", 1)[1], frame.lineno]
for name in [n for n in sys.modules if n == "sglang" or n.startswith("sglang.")]:
    del sys.modules[name]
for name, path in (("sglang", root), ("sglang.srt", root / "srt")):  # packages without their __init__
    mod = types.ModuleType(name)
    mod.__path__ = [str(path)]
    sys.modules[name] = mod

import transformers
from transformers import PretrainedConfig
out["transformers"] = transformers.__version__
os.environ["SOFTGRPO_SGLANG"] = "on"
from sglang.srt.plugins import load_plugins
from sglang.srt.plugins.hook_registry import HookRegistry
from sglang.srt.sampling.sampling_params import SamplingParams
logging.disable(logging.CRITICAL)  # apply_hooks logs the targets that need torchvision
load_plugins()
out["registered"] = sorted(HookRegistry._hooks)
out["verify_hooked"] = hasattr(SamplingParams.verify, "__wrapped__")
good = SamplingParams(max_new_tokens=4, custom_params={"enable_soft_thinking": True, "seed": 7, "max_topk": 4,
                                                       "think_end_ids": [5], "after_thinking_top_k": 8})
good.verify(100)
bad = SamplingParams(max_new_tokens=4, custom_params={"enable_soft_thinking": True, "seed": -1})
try:
    bad.verify(100)
    out["bad_verify"] = None
except Exception as exc:
    out["bad_verify"] = [type(exc).__name__, str(exc)]
SamplingParams(max_new_tokens=4).verify(100)  # a plain request passes untouched

loaded, blocked, built, failed = [], {}, [], []
for info in pkgutil.iter_modules([str(root / "srt" / "configs")]):
    name = f"sglang.srt.configs.{info.name}"
    try:
        mod = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        blocked[name] = exc.name
        continue
    loaded.append(name)
    for cname, c in sorted(vars(mod).items()):
        if inspect.isclass(c) and issubclass(c, PretrainedConfig) and c.__module__ == name:
            try:
                c()
                built.append(cname)
            except Exception as exc:
                failed.append([cname, repr(exc)])
out.update(loaded=loaded, blocked=blocked, built=built, failed=failed)
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("sglang-0.5.12")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(where),
                           str(pip_download("0.5.12"))], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return where


@pytest.mark.slow
def test_sglang_0512_with_transformers_590(target: Path) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, str(target)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(target)})
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["transformers"] == "5.9.0"
    try:
        import torchvision  # noqa: F401

        has_torchvision = True
    except Exception:
        has_torchvision = False
    if not has_torchvision:
        assert out["import_sglang"] == ["torchvision", "srt/utils/common.py", 90]
    else:
        assert out["import_sglang"] == "ok"
    # sglang's own loader found our entry point and registered the four hooks
    from soft_thinking.engines.sglang.hooks import TARGETS

    assert out["registered"] == sorted(TARGETS.values())
    assert out["verify_hooked"] is True
    kind, message = out["bad_verify"]
    assert kind == "SettingsError" and "custom_params['seed']=-1" in message
    # model configs: which load with transformers 5.9.0 on CPU, which need torchvision; all that load build
    assert set(out["blocked"].values()) <= {"torchvision"}
    assert {"sglang.srt.configs.chatglm", "sglang.srt.configs.dbrx", "sglang.srt.configs.deepseekvl2",
            "sglang.srt.configs.exaone", "sglang.srt.configs.falcon_h1"} <= set(out["loaded"])
    assert out["failed"] == [] and len(out["built"]) >= 14
