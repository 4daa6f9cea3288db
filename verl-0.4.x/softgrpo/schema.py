"""The typed schema behind every config dataclass: the annotations are the validator.

:func:`build` turns a plain mapping (YAML + overrides, already merged) into a dataclass, checking
each value against its field's annotation *before* any range check, any import of a model and any
write:

- unknown keys are an error naming the full dotted key and the keys allowed there;
- ``bool`` takes only ``true``/``false`` (a string ``"false"`` would read as true in Python);
- ``int`` takes only integers (not booleans, not ``1.5``, not ``"3"``);
- ``float`` takes integers or floats, finite only (``.inf``/``.nan`` reach no optimizer or timeout);
- ``str`` takes only strings (``trainer.device=5`` is an error, not a device index);
- ``X | None`` also takes ``null``; ``tuple[float, float]`` takes a list of exactly two numbers;
- ``list[str]`` takes a list of strings, or one string as a one-element list (what verl's
  ``Tracking`` does with ``trainer.logger=console``);
- ``dict[str, Any]`` takes a mapping (its values are checked by the section's own validator).

Every failure is a :class:`~soft_thinking.core.config.ConfigError`:
``config key <dotted.key>=<value> is invalid: allowed <what>``.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import fields, is_dataclass
from functools import cache
from typing import Any

from soft_thinking.core.config import ConfigError


def fail(key: str, value: Any, allowed: str) -> typing.NoReturn:
    raise ConfigError(f"config key {key}={value!r} is invalid: allowed {allowed}")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def describe(tp: Any) -> str:
    """A reader's name of an annotation: ``an integer``, ``true or false``, ``null or a string``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a finite number"
    if tp is str:
        return "a string"
    if tp is Any:
        return "any value"
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else describe(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
        return f"a list of {len(args)} values ({', '.join(describe(a) for a in args)})"
    if origin is list:
        return f"a list of {describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def check_value(key: str, value: Any, tp: Any) -> Any:
    """``value`` checked against annotation ``tp`` (lists become tuples for tuple fields)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return check_value(key, value, arg)
            except ConfigError:
                continue
        fail(key, value, describe(tp))
    if tp is bool:
        if not isinstance(value, bool):
            fail(key, value, "true or false (a boolean, not a string or a number)")
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            fail(key, value, "an integer")
        return value
    if tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            fail(key, value, "a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            fail(key, value, "a string")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            fail(key, value, describe(tp))
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(check_value(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value))
        if len(value) != len(args):
            fail(key, value, describe(tp))
        return tuple(check_value(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
    if origin is list:
        if isinstance(value, str) and args[0] is str:
            value = [value]  # verl's Tracking: a string backend is a one-element list
        if not isinstance(value, (list, tuple)):
            fail(key, value, describe(tp))
        return [check_value(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            fail(key, value, "a mapping")
        return dict(value)
    raise TypeError(f"schema: unsupported annotation {tp!r} of {key}")  # a bug in a config class


def build(cls: type, node: Any, prefix: str = "", hints: dict[str, str] | None = None) -> Any:
    """Instantiate dataclass ``cls`` from a plain mapping, checking keys and types (module doc).

    ``hints``: ``{dotted key: allowed values}`` added to a type error of that key (enums)."""
    if node is None:
        return cls()
    where = prefix.rstrip(".") or "the root"
    if not isinstance(node, dict):
        fail(where, node, "a mapping")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(node) - set(known))
    if unknown:
        raise ConfigError(f"unknown config key(s) {[prefix + str(k) for k in unknown]}; allowed under "
                          f"{where}: {sorted(known)}")
    types_ = _hints(cls)
    kwargs = {}
    for name, value in node.items():
        f = known[name]
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        if is_dataclass(default):
            kwargs[name] = build(type(default), value, f"{prefix}{name}.", hints)
            continue
        try:
            kwargs[name] = check_value(prefix + name, value, types_[name])
        except ConfigError as err:
            extra = (hints or {}).get(prefix + name)
            if extra is None:
                raise
            raise ConfigError(f"{err}: {extra}") from None
    return cls(**kwargs)
