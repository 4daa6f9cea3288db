"""One run per folder: an exclusive advisory lock on ``<folder>/.lock``, released when the process dies.

Two training runs on one ``default_local_dir`` or two ``eval run`` into one run folder would
interleave their metrics and samples. :func:`hold_run_lock` takes ``fcntl.flock(LOCK_EX | LOCK_NB)``
on a lock file inside the folder and writes the holder (pid, host, command, start time) into it.
The kernel drops the lock when the holder exits or crashes, so a stale lock never blocks a rerun;
the file itself stays (its contents say who held it last).

Usage (after every input has been validated, before the first write)::

    with hold_run_lock(run_dir):
        ...  # the run
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from soft_thinking.errors import SoftGRPOError

LOCK_NAME = ".lock"


class RunLockedError(SoftGRPOError):
    """Another live process holds the run folder."""


def _holder(fd: int) -> str:
    try:
        raw = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        info = json.loads(raw)
        return f"pid {info['pid']} on {info['host']} since {info['since']} ({info['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (its lock file names no holder)"


@contextmanager
def hold_run_lock(folder: str | Path) -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (created if missing) for the ``with`` block.

    Raises :class:`RunLockedError` naming the holder when another live process has it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(
                f"run folder {folder} is in use by {_holder(fd)}; wait for it to finish or choose another folder"
            ) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "command": " ".join(sys.argv)[:300],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        yield folder
    finally:
        os.close(fd)  # closing the descriptor releases the flock
