"""Checks of single trainer inputs that need more than a type: the device (and whether this torch
build has it) and a data source (``builtin:arithmetic[?options]`` or a .jsonl/.parquet path)."""

from __future__ import annotations

import re
from pathlib import Path

from softgrpo.schema import fail


def check_device(device: str) -> None:
    """``cpu``, ``cuda`` or ``cuda:N``; CUDA only where this torch build sees that device."""
    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if device != "cpu" and m is None:
        fail("trainer.device", device, "'cpu', 'cuda' or 'cuda:N'")


def check_device_available(device: str) -> None:
    """The device exists in this torch build (run before a trainer starts; a shipped GPU config still
    validates on a CPU machine)."""
    check_device(device)
    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if m is not None:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(m.group(1) or 0)
        if index >= count:
            fail("trainer.device", device, "'cpu' (this torch build sees no CUDA device)" if count == 0
                 else f"'cpu' or 'cuda:N' with N < {count}")


def check_data_spec(key: str, spec: str) -> None:
    """A data source: ``builtin:arithmetic[?k=v&...]`` (its options checked) or a .jsonl/.parquet path."""
    from softgrpo.reference.data import parse_builtin

    if spec.startswith("builtin:"):
        parse_builtin(spec, key)
    elif Path(spec).suffix not in (".jsonl", ".parquet"):
        fail(key, spec, "a .jsonl or .parquet file or 'builtin:arithmetic'")
