"""A CPU platform for verl 0.9.1, selected with ``VERL_PLATFORM=cpu`` (inert otherwise).

verl ships platforms for nvidia, huawei and amd only and falls back to "nvidia" (cuda/nccl). This
registers ``"cpu"`` through verl's own extension point, ``verl.plugin.platform.PlatformRegistry``:

* device ``"cpu"``, process-group backend ``"gloo"``;
* ``device_module`` is :data:`CPU_DEVICE`: ``torch.cpu`` plus no-op shims for the CUDA-only calls
  verl makes on ``get_torch_device()`` (``empty_cache``, ``mem_get_info``, ``max_memory_*``,
  ``get/set_rng_state``, ...);
* Ray resource name ``"GPU"``: verl's resource pools ask for GPUs only, so a CPU run starts Ray with
  *logical* GPUs (``+ray_kwargs.ray_init.num_gpus=N``); torch never sees CUDA.

Auto-detection never picks this platform (``is_platform_available`` is False): only
``VERL_PLATFORM=cpu`` does, so installing the plug-in changes nothing on a GPU machine.
"""

from __future__ import annotations

import os
import types
from contextlib import contextmanager
from typing import Any

import psutil
import torch
from verl.plugin.platform import PlatformBase

PLATFORM_NAME = "cpu"


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


def _zero(*args: Any, **kwargs: Any) -> int:
    return 0


def _mem_get_info(*args: Any, **kwargs: Any) -> tuple[int, int]:
    vm = psutil.virtual_memory()
    return int(vm.available), int(vm.total)


class _DeviceProperties:
    def __init__(self) -> None:
        self.name = "cpu"
        self.total_memory = int(psutil.virtual_memory().total)


def _build_cpu_device_module() -> types.ModuleType:
    """``torch.cpu`` plus the CUDA-module calls verl makes, as no-ops or host equivalents."""
    mod = types.ModuleType("softgrpo_cpu_device")
    for name in dir(torch.cpu):
        if not name.startswith("__"):
            setattr(mod, name, getattr(torch.cpu, name))
    shims: dict[str, Any] = {
        "empty_cache": _noop,
        "ipc_collect": _noop,
        "set_per_process_memory_fraction": _noop,
        "reset_peak_memory_stats": _noop,
        "reset_accumulated_memory_stats": _noop,
        "memory_allocated": _zero,
        "memory_reserved": _zero,
        "max_memory_allocated": _zero,
        "max_memory_reserved": _zero,
        "mem_get_info": _mem_get_info,
        "get_device_name": lambda *a, **k: "cpu",
        "get_device_properties": lambda *a, **k: _DeviceProperties(),
        "get_rng_state": lambda *a, **k: torch.get_rng_state(),
        "set_rng_state": lambda state, *a, **k: torch.set_rng_state(state),
        "manual_seed": lambda seed: torch.manual_seed(seed),
        "manual_seed_all": lambda seed: torch.manual_seed(seed),
        "current_device": lambda: "cpu",
        "memory": types.SimpleNamespace(_record_memory_history=_noop, _set_allocator_settings=_noop),
    }
    for name, fn in shims.items():
        setattr(mod, name, fn)
    return mod


CPU_DEVICE: types.ModuleType = _build_cpu_device_module()


class PlatformCPU(PlatformBase):
    """verl's platform interface on the host CPU (gloo, logical Ray GPUs)."""

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> types.ModuleType:
        return CPU_DEVICE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        return False  # never auto-detected: VERL_PLATFORM=cpu selects it

    def current_device(self) -> str:  # type: ignore[override]  # every use is .to()/device=
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: Any) -> None:
        return None

    def synchronize(self, device_index: Any = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"  # Ray sets it for actors holding logical GPUs

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None


def cpu_platform_selected() -> bool:
    """True when this process runs verl on the CPU platform (``VERL_PLATFORM=cpu``)."""
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == PLATFORM_NAME
