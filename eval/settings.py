"""Sampling settings with the original's flag names, and their mapping to ``SoftThinkingConfig``.

The settings that change what a sample *is* (model, backend, dtype, prompt template, seed, max
tokens, every sampling knob) are stored in ``<run>/config.json``; a resume with different ones
is refused. ``num_samples``, ``limit``, ``benchmarks``, ``device`` and the data source only
decide *how many* samples are drawn and are not part of that fingerprint.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from soft_thinking.core.config import NOISE_SWITCHES, ConfigError, SoftThinkingConfig
from soft_thinking.errors import SoftGRPOError
from soft_thinking.text import derive_seed

NOISE_FLAGS = NOISE_SWITCHES  # the original's --add_noise_* switches (one table, in the core)


class SettingsError(SoftGRPOError, ValueError):
    """An invalid flag value; the message names the flag and the allowed values."""


_KINDS: dict[str, tuple[Any, str]] = {
    "bool": (lambda v: isinstance(v, bool), "true or false (a boolean, not a string)"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "float": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v), "a finite number"),
    "str": (lambda v: isinstance(v, str), "a string"),
}


def check_type(flag: str, value: Any, annotation: str) -> None:
    """``value`` against a dataclass annotation (``bool``, ``int``, ``float``, ``str``, each ``| None``).

    A YAML string ``"false"`` is not a boolean, ``1.0`` is not an integer, ``.inf`` is not a finite
    number: each is a :class:`SettingsError` naming ``flag`` and what is allowed.
    """
    optional = annotation.endswith(" | None")
    if value is None and optional:
        return
    ok, allowed = _KINDS[annotation.removesuffix(" | None")]
    if not ok(value):
        raise SettingsError(f"{flag}={value!r} is invalid: allowed {allowed}{' or null' if optional else ''}")


@dataclass(frozen=True)
class SamplingSettings:
    """Flags of the original's sampling scripts (same names)."""

    enable_soft_thinking: bool = False
    max_topk: int = 5
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 30
    min_p: float = 0.0
    after_thinking_temperature: float | None = None
    after_thinking_top_p: float | None = None
    after_thinking_top_k: int | None = None
    after_thinking_min_p: float | None = None
    gumbel_softmax_temperature: float = 0.5
    noise_factor: float = 1.0
    add_noise_gumbel_softmax: bool = False
    add_noise_dirichlet: bool = False
    add_noise_gaussian: bool = False
    early_stopping_entropy_threshold: float = 0.0
    early_stopping_length_threshold: int = 256
    max_generated_tokens: int = 32768
    seed: int = 0

    @property
    def noise(self) -> str:
        """``gumbel``/``dirichlet``/``gaussian`` from the ``--add_noise_*`` switch, else ``none``."""
        on = [kind for flag, kind in NOISE_FLAGS.items() if getattr(self, flag)]
        if len(on) > 1:
            raise SettingsError(f"at most one of {list(NOISE_FLAGS)} may be set, got {on}")
        return on[0] if on else "none"

    def validate(self) -> SamplingSettings:
        """Every value, before anything is written or a model is loaded (the think-end ids and the
        vocabulary size are checked again once the tokenizer is known)."""
        for f in fields(self):  # types first: a string "false" must not read as true below
            check_type(f"--{f.name}", getattr(self, f.name), str(f.type))
        for name in ("max_generated_tokens", "seed"):
            value = getattr(self, name)
            low = 1 if name == "max_generated_tokens" else 0
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise SettingsError(f"--{name}={value!r} is invalid: allowed an integer >= {low}")
        _ = self.noise
        try:
            self.to_soft_thinking_config(think_end_token_ids=(0,))
        except ConfigError as exc:  # name the flag, not the config field
            raise SettingsError(str(exc).replace("SoftThinkingConfig.", "--")) from exc
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> SamplingSettings:
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise SettingsError(f"unknown sampling setting(s) {sorted(unknown)}; allowed: {sorted(names)}")
        return cls(**values).validate()

    def to_soft_thinking_config(self, think_end_token_ids: tuple[int, ...] = ()) -> SoftThinkingConfig:
        """Build the engine's ``SoftThinkingConfig`` with ``SoftThinkingConfig.from_flags`` (validated).

        With no think-end ids (the string is not in the vocabulary) soft thinking stays on until
        EOS (``soft_until_eos=True``).
        """
        flags = {k: v for k, v in self.to_dict().items() if k not in ("max_generated_tokens", "seed")}
        flags["think_end_token_ids"] = tuple(think_end_token_ids)
        flags["soft_until_eos"] = self.enable_soft_thinking and not think_end_token_ids
        if not think_end_token_ids:
            flags["early_stopping_entropy_threshold"] = 0.0
        return SoftThinkingConfig.from_flags(flags).validate()


def problem_seed(seed: int, benchmark: str, problem_id: int) -> int:
    """Per-problem seed: :func:`soft_thinking.text.derive_seed` of ``(seed, benchmark, problem_id)``.

    Backends seed sample j of a problem from (problem seed, j) only, so a sample is the same
    whether it is drawn in a fresh run or in a resumed one.
    """
    return derive_seed(seed, benchmark, problem_id)
