"""vLLM wheels for the source-contract tests, fetched with ``pip download --no-deps`` into the ignored ``.cache/``.

The CUDA wheel of vllm 0.24.0 is about 280 MB (one download, then cached); only its ``.py`` files are read,
straight from the zip, never installed or imported.
"""

from __future__ import annotations

from pathlib import Path

from wheel_cache import CACHE_ROOT, cached_wheel

CACHE = CACHE_ROOT / "vllm-wheels"


def pip_download(version: str, dist: str = "vllm") -> Path:
    """The cached ``dist`` wheel for ``version`` (downloaded once); skips only when the index is unreachable."""
    return cached_wheel(dist, version, CACHE)
