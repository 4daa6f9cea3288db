"""SGLang wheels for the tests (``tests/wheel_cache.py``), in ``.cache/sglang-wheels``."""

from __future__ import annotations

from pathlib import Path

from wheel_cache import CACHE_ROOT, OFFLINE, cached_wheel

CACHE = CACHE_ROOT / "sglang-wheels"
__all__ = ["CACHE", "OFFLINE", "pip_download"]


def pip_download(version: str) -> Path:
    """The cached sglang wheel for ``version`` (downloaded once); skips only when the index is unreachable."""
    return cached_wheel("sglang", version, CACHE, timeout_s=600)
