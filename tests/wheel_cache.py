"""Wheels for the tests, fetched once with ``pip download --no-deps`` into the repo's ignored ``.cache/``.

One download at a time per cache folder (an ``flock`` on ``<cache>/.lock``): with ``pytest -n 2`` two workers may
ask for the same wheel, and the second must find it whole, not half-copied.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

import pytest

CACHE_ROOT = Path(__file__).resolve().parent.parent / ".cache"
#: pip's words when the index cannot be reached (then a test skips, naming the reason)
OFFLINE = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
           "Name or service not known", "Network is unreachable", "ConnectTimeoutError", "ProxyError")


def cached_wheel(dist: str, version: str, cache: Path, timeout_s: float = 900) -> Path:
    """The cached ``dist==version`` wheel in ``cache`` (downloaded once); skips only when the index is unreachable."""
    stem = dist.replace("-", "_")
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        hits = sorted(cache.glob(f"{stem}-{version}-*.whl"))
        if hits:
            return hits[0]
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                               f"{dist}=={version}", "-d", str(cache)], capture_output=True, text=True,
                              timeout=timeout_s)
    text = done.stdout + done.stderr
    if done.returncode != 0 and any(word in text for word in OFFLINE):
        pytest.skip(f"pip cannot reach the package index to download {dist}=={version}: "
                    f"{text.strip().splitlines()[-1]}")
    assert done.returncode == 0, f"pip download {dist}=={version} failed:\n{text}"
    hits = sorted(cache.glob(f"{stem}-{version}-*.whl"))
    assert hits, f"pip download {dist}=={version} left no wheel in {cache}"
    return hits[0]
