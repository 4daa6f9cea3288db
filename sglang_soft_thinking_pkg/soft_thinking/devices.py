"""``--device`` checked against what the installed torch can use, before any model is loaded.

Allowed: ``cpu``; ``cuda`` / ``cuda:N`` when torch has CUDA and ``N`` < the number of GPUs; ``mps``
when the Metal backend is available. Anything else (``gpu``, ``5``, ``cuda`` on a CPU-only torch) is
a :class:`DeviceError` naming the flag, the value and what this machine allows.
"""

from __future__ import annotations

from soft_thinking.errors import SoftGRPOError


class DeviceError(SoftGRPOError, ValueError):
    """A device this torch cannot use."""


def available_devices() -> list[str]:
    """The device strings this machine's torch accepts (``cpu`` first)."""
    import torch

    out = ["cpu"]
    if torch.cuda.is_available():
        out += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def check_device(device: object, flag: str = "--device") -> str:
    """``device`` if this torch can use it, else :class:`DeviceError` (allowed values listed)."""
    allowed = available_devices()
    if isinstance(device, str) and device.strip().lower() in allowed:
        return device.strip().lower()
    import torch

    why = ""
    if isinstance(device, str) and device.strip().lower().startswith("cuda") and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}, no GPU visible"
        why = f" (torch {torch.__version__} is {build})"
    raise DeviceError(f"{flag}={device!r} is invalid on this machine{why}: allowed {allowed}")
