"""The GPU check's framework (bench/gpu_check.py): the check registry, statuses, timing, sync-debug."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


class CheckFailed(AssertionError):
    """A check ran and its numbers miss a bound: ``numbers`` are still recorded."""

    def __init__(self, message: str, numbers: dict[str, Any]) -> None:
        super().__init__(message)
        self.numbers = numbers


class Skipped(Exception):
    """The check does not apply on this device."""


@dataclass
class Ctx:
    device: torch.device
    quick: bool  # small sizes (the CPU plumbing run)
    compile_backend: str | None = None  # None: inductor, except "eager" (trace only) for a quick CPU run

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def backend(self) -> str:
        if self.compile_backend:
            return self.compile_backend
        return "eager" if self.quick and not self.cuda else "inductor"  # CPU plumbing: trace, no C++ build

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)


CHECKS: dict[str, Callable[[Ctx], dict[str, Any]]] = {}


def check(fn: Callable[[Ctx], dict[str, Any]]) -> Callable[[Ctx], dict[str, Any]]:
    CHECKS[fn.__name__] = fn
    return fn


def require(ok: bool, message: str, numbers: dict[str, Any]) -> None:
    if not ok:
        raise CheckFailed(message, numbers)


def timed(ctx: Ctx, fn: Callable[[], Any], repeats: int) -> float:
    """Median milliseconds of ``fn`` (device-synchronised)."""
    out = []
    for _ in range(repeats):
        ctx.sync()
        t0 = time.perf_counter()
        fn()
        ctx.sync()
        out.append(1000 * (time.perf_counter() - t0))
    return sorted(out)[len(out) // 2]


class sync_errors:
    """``torch.cuda.set_sync_debug_mode("error")`` inside (a no-op on a CPU)."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def __enter__(self) -> None:
        if self.ctx.cuda:
            self.prev = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("error")

    def __exit__(self, *exc: object) -> None:
        if self.ctx.cuda:
            torch.cuda.set_sync_debug_mode(self.prev)
