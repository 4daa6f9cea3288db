"""vLLM wheels for the source-contract tests, fetched with ``pip download --no-deps`` into the ignored ``.cache/``.

The CUDA wheel of vllm 0.24.0 is about 280 MB (one download, then cached); only its ``.py`` files are read,
straight from the zip, never installed or imported.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sglang_wheels import OFFLINE  # tests/sglang_wheels.py: pip's words for an unreachable index

CACHE = Path(__file__).resolve().parent.parent / ".cache" / "vllm-wheels"


def pip_download(version: str, dist: str = "vllm") -> Path:
    """The cached ``dist`` wheel for ``version`` (downloaded once); skips only when the index is unreachable."""
    stem = dist.replace("-", "_")
    hits = sorted(CACHE.glob(f"{stem}-{version}-*.whl"))
    if hits:
        return hits[0]
    CACHE.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                           f"{dist}=={version}", "-d", str(CACHE)], capture_output=True, text=True, timeout=900)
    text = done.stdout + done.stderr
    if done.returncode != 0 and any(word in text for word in OFFLINE):
        pytest.skip(f"pip cannot reach the package index to download {dist}=={version}: "
                    f"{text.strip().splitlines()[-1]}")
    assert done.returncode == 0, f"pip download {dist}=={version} failed:\n{text}"
    hits = sorted(CACHE.glob(f"{stem}-{version}-*.whl"))
    assert hits, f"pip download {dist}=={version} left no wheel in {CACHE}"
    return hits[0]
