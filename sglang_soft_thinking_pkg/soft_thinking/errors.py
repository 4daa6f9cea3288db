"""The one error type of the toolkit.

Every expected failure (a bad config value, a missing model or file, a corrupt dataset, a refused
resume) raises a subclass of :class:`SoftGRPOError`. Each ``__main__`` turns it into one line
``error: <message>`` on stderr and exit status 2 (:func:`exit_on_error`); anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., int])


class SoftGRPOError(Exception):
    """Base of every error a user can cause and fix; the message names the field and the allowed values."""


def exit_on_error(main: F) -> F:
    """Decorate a CLI ``main``: a :class:`SoftGRPOError` becomes ``error: ...`` on stderr and exit 2."""

    @wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        try:
            return main(*args, **kwargs)
        except SoftGRPOError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return wrapper  # type: ignore[return-value]
