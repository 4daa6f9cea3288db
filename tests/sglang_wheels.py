"""SGLang wheels for the tests, fetched with ``pip download --no-deps`` into the repo's ignored ``.cache/``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CACHE = Path(__file__).resolve().parent.parent / ".cache" / "sglang-wheels"
#: pip's words when the index cannot be reached (then a test skips, naming the reason)
OFFLINE = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
           "Name or service not known", "Network is unreachable", "ConnectTimeoutError", "ProxyError")


def pip_download(version: str) -> Path:
    """The cached sglang wheel for ``version`` (downloaded once); skips only when the index is unreachable."""
    hits = sorted(CACHE.glob(f"sglang-{version}-*.whl"))
    if hits:
        return hits[0]
    CACHE.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                           f"sglang=={version}", "-d", str(CACHE)], capture_output=True, text=True, timeout=600)
    text = done.stdout + done.stderr
    if done.returncode != 0 and any(word in text for word in OFFLINE):
        pytest.skip(f"pip cannot reach the package index to download sglang=={version}: {text.strip().splitlines()[-1]}")
    assert done.returncode == 0, f"pip download sglang=={version} failed:\n{text}"
    hits = sorted(CACHE.glob(f"sglang-{version}-*.whl"))
    assert hits, f"pip download sglang=={version} left no wheel in {CACHE}"
    return hits[0]
