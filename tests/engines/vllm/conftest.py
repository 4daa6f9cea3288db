"""Shared vLLM fixtures: one SmolLM2 engine with the plug-in for this folder (start-up takes minutes on CPU).

The engine is closed when the next test to run is outside this folder (``pytest_runtest_teardown`` below), so
its busy worker process does not keep a core for the rest of the session; a test here that comes later (with
``pytest -n`` a worker may get this folder's files at different times) starts a fresh one.

The engine is built so that every test also exercises the hard paths: ``max_num_batched_tokens=64``
chunks long prompts, a KV cache of 448 tokens (14 blocks of 32) preempts concurrent requests,
prefix caching is on. Skips cleanly, naming the reason, when vllm is not installed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from vllm_common import SKIP_REASON, VLLM_MISSING, engine_options  # this folder is on sys.path (rootdir mode)

HERE = Path(__file__).resolve().parent
_OPEN: list = []  # the shared engine while it runs (at most one)


def _close_engines() -> None:
    while _OPEN:
        _OPEN.pop().close()


def pytest_runtest_teardown(item, nextitem) -> None:
    """The next test is known and outside this folder: close the engine now (``None`` means unknown: keep it)."""
    if nextitem is not None and HERE not in Path(nextitem.path).resolve().parents:
        _close_engines()


@pytest.fixture(scope="session")
def smol_path():
    from soft_thinking.engines.hf.models import ensure_smollm2

    return str(ensure_smollm2())


@pytest.fixture(scope="session")
def _engine_session():
    yield
    _close_engines()


@pytest.fixture
def vllm_engine(smol_path, _engine_session):
    """The shared engine, started on first use (and again if the teardown hook closed it)."""
    if VLLM_MISSING:
        pytest.skip(SKIP_REASON)
    if not _OPEN:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        from soft_thinking.engines.vllm.client import VLLMEngine

        _OPEN.append(VLLMEngine(smol_path, **engine_options()))
    return _OPEN[0]


@pytest.fixture(scope="session")
def hf_smol():
    from soft_thinking.engines.hf.engine import SoftThinkingEngine
    from soft_thinking.engines.hf.models import load_model

    model, tok = load_model("smollm2-135m", dtype="float32")
    return SoftThinkingEngine(model, tok), model, tok
