"""Soft-thinking sampling configuration (spec §1, §5, §6).

One dataclass carries every knob of a soft-thinking rollout. The SGLang plug-in, the reference
engine, the evaluation harness and the trainer all build it from their own flags, so the field
names follow the original project's sampling flags (``max_topk``, ``after_thinking_top_p``,
``gumbel_softmax_temperature``, ...).

``validate()`` rejects every invalid value with a ``ValueError`` that names the field and the
allowed range, before any work is done.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from soft_thinking.errors import SoftGRPOError

NOISE_KINDS = ("none", "gumbel", "dirichlet", "gaussian")
LOGPROB_MODES = ("paper", "exact")


class ConfigError(SoftGRPOError, ValueError):
    """An invalid configuration value. The message names the field and the allowed values."""


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"SoftThinkingConfig.{name}={value!r} is invalid: allowed {allowed}")


@dataclass(frozen=True)
class SoftThinkingConfig:
    """Everything a soft-thinking (or plain discrete) rollout needs.

    Thinking phase (before the think-end tokens): candidates are the ``max_topk`` largest
    entries of the filtered distribution; the step input is ``sum_i w_i E[c_i]``.
    Answer phase (the think-end step onwards): discrete sampling with the ``after_thinking_*``
    settings (``None`` = same as the thinking setting).
    """

    enable_soft_thinking: bool = True
    max_topk: int = 5
    # thinking-phase filters (spec §1 steps 1-2)
    temperature: float = 1.0
    top_p: float = 0.95
    top_k: int = 5  # -1 = off
    min_p: float = 0.0
    # answer-phase filters; None inherits the thinking value
    after_thinking_temperature: float | None = None
    after_thinking_top_p: float | None = None
    after_thinking_top_k: int | None = None
    after_thinking_min_p: float | None = None
    # noise on the mixture (spec §1 step 4)
    noise: str = "gumbel"
    gumbel_softmax_temperature: float = 0.1
    noise_factor: float = 1.0
    gumbel_clamp: tuple[float, float] | None = (-1.5, 3.0)
    dirichlet_alpha: float = 1.0
    gaussian_sigma: float = 0.05
    gaussian_clip: float = 0.15
    # phase control
    think_end_token_ids: tuple[int, ...] = ()
    soft_until_eos: bool = False
    early_stopping_entropy_threshold: float = 0.0  # 0 = Cold Stop off
    early_stopping_length_threshold: int = 256
    # trainer-side estimator options (spec §3)
    logprob_mode: str = "paper"
    logp_floor: float = -3.0
    degenerate_as_discrete: bool = False
    # compatibility with the original's bug: after </think> keep choosing by Gumbel-argmax with
    # the thinking filters and ignore after_thinking_* (spec §1 "Phase switching").
    compat_stale_phase_mask: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    # -- derived values -------------------------------------------------------------------
    @property
    def answer_temperature(self) -> float:
        return self.temperature if self.after_thinking_temperature is None else self.after_thinking_temperature

    @property
    def answer_top_p(self) -> float:
        return self.top_p if self.after_thinking_top_p is None else self.after_thinking_top_p

    @property
    def answer_top_k(self) -> int:
        return self.top_k if self.after_thinking_top_k is None else self.after_thinking_top_k

    @property
    def answer_min_p(self) -> float:
        return self.min_p if self.after_thinking_min_p is None else self.after_thinking_min_p

    @property
    def effective_noise(self) -> str:
        """Greedy decoding (T=0) has no noise: ``w = p~`` (spec §1 "Greedy decoding")."""
        return "none" if self.temperature == 0 else self.noise

    def replace(self, **changes: Any) -> SoftThinkingConfig:
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(
                f"unknown SoftThinkingConfig field(s) {sorted(unknown)}; allowed: {[f.name for f in fields(self)]}"
            )
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        d["think_end_token_ids"] = list(self.think_end_token_ids)
        d["gumbel_clamp"] = None if self.gumbel_clamp is None else list(self.gumbel_clamp)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SoftThinkingConfig:
        names = {f.name for f in fields(cls)} - {"extra"}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown soft_thinking key(s) {sorted(unknown)}; allowed: {sorted(names)}")
        d = dict(d)
        if d.get("think_end_token_ids") is not None:
            d["think_end_token_ids"] = tuple(int(i) for i in d["think_end_token_ids"])
        else:
            d.pop("think_end_token_ids", None)
        if d.get("gumbel_clamp") is not None:
            d["gumbel_clamp"] = tuple(float(x) for x in d["gumbel_clamp"])
        return cls(**d)

    # -- validation -----------------------------------------------------------------------
    def validate(self, *, vocab_size: int | None = None, for_training: bool = False) -> SoftThinkingConfig:
        """Check every field; raise :class:`ConfigError` naming the first bad one.

        ``for_training`` adds the constraints that replay consistency needs: the trainer
        re-derives the noise as ``g' = q - log p~`` which is only a Gumbel(0,1) draw when
        ``noise_factor == 1``, and needs ``temperature > 0`` and a stochastic noise kind.
        """
        if not isinstance(self.max_topk, int) or self.max_topk < 1:
            _fail("max_topk", self.max_topk, "an integer >= 1")
        if vocab_size is not None and self.max_topk > vocab_size:
            _fail("max_topk", self.max_topk, f"<= the vocabulary size ({vocab_size})")
        for prefix in ("", "after_thinking_"):
            t = getattr(self, prefix + "temperature")
            tp = getattr(self, prefix + "top_p")
            tk = getattr(self, prefix + "top_k")
            mp = getattr(self, prefix + "min_p")
            if prefix and t is None and tp is None and tk is None and mp is None:
                continue
            if t is not None and (not _finite(t) or t < 0):
                _fail(prefix + "temperature", t, "a finite number >= 0 (0 = greedy)")
            if tp is not None and (not _finite(tp) or not 0 < tp <= 1):
                _fail(prefix + "top_p", tp, "a number in (0, 1]")
            if tk is not None and (not isinstance(tk, int) or (tk < 1 and tk != -1)):
                _fail(prefix + "top_k", tk, "-1 (off) or an integer >= 1")
            if mp is not None and (not _finite(mp) or not 0 <= mp < 1):
                _fail(prefix + "min_p", mp, "a number in [0, 1)")
        if self.noise not in NOISE_KINDS:
            _fail("noise", self.noise, f"one of {NOISE_KINDS}")
        if not _finite(self.gumbel_softmax_temperature) or self.gumbel_softmax_temperature <= 0:
            _fail("gumbel_softmax_temperature", self.gumbel_softmax_temperature, "a number > 0")
        if not _finite(self.noise_factor) or self.noise_factor <= 0:
            _fail("noise_factor", self.noise_factor, "a number > 0")
        if self.gumbel_clamp is not None:
            lo_hi = tuple(self.gumbel_clamp)
            if len(lo_hi) != 2 or not all(_finite(x) for x in lo_hi) or lo_hi[0] >= lo_hi[1]:
                _fail("gumbel_clamp", self.gumbel_clamp, "None or (low, high) with low < high")
        if not _finite(self.dirichlet_alpha) or self.dirichlet_alpha <= 0:
            _fail("dirichlet_alpha", self.dirichlet_alpha, "a number > 0")
        if not _finite(self.gaussian_sigma) or self.gaussian_sigma <= 0:
            _fail("gaussian_sigma", self.gaussian_sigma, "a number > 0")
        if not _finite(self.gaussian_clip) or self.gaussian_clip <= 0:
            _fail("gaussian_clip", self.gaussian_clip, "a number > 0")
        if any((not isinstance(i, int)) or i < 0 for i in self.think_end_token_ids):
            _fail("think_end_token_ids", self.think_end_token_ids, "a tuple of token ids >= 0")
        if vocab_size is not None and any(i >= vocab_size for i in self.think_end_token_ids):
            _fail("think_end_token_ids", self.think_end_token_ids, f"ids < the vocabulary size ({vocab_size})")
        if self.enable_soft_thinking and not self.think_end_token_ids and not self.soft_until_eos:
            _fail(
                "think_end_token_ids",
                self.think_end_token_ids,
                "a non-empty token-id sequence for the think-end string, or set soft_until_eos=True "
                "to stay soft until EOS (the model has no think-end token)",
            )
        if self.think_end_token_ids and self.soft_until_eos:
            _fail("soft_until_eos", self.soft_until_eos, "False when think_end_token_ids is set")
        if not _finite(self.early_stopping_entropy_threshold) or self.early_stopping_entropy_threshold < 0:
            _fail("early_stopping_entropy_threshold", self.early_stopping_entropy_threshold, "a number >= 0 (0 = off)")
        if not isinstance(self.early_stopping_length_threshold, int) or self.early_stopping_length_threshold < 1:
            _fail("early_stopping_length_threshold", self.early_stopping_length_threshold, "an integer >= 1")
        if self.early_stopping_entropy_threshold > 0 and not self.think_end_token_ids:
            _fail(
                "early_stopping_entropy_threshold",
                self.early_stopping_entropy_threshold,
                "0 when there are no think_end_token_ids (Cold Stop forces the think-end tokens)",
            )
        if self.logprob_mode not in LOGPROB_MODES:
            _fail("logprob_mode", self.logprob_mode, f"one of {LOGPROB_MODES}")
        if not _finite(self.logp_floor):
            _fail("logp_floor", self.logp_floor, "a finite number")
        if for_training:
            if self.temperature <= 0:
                _fail("temperature", self.temperature, "> 0 for training (a log-probability needs a distribution)")
            if self.answer_temperature <= 0:  # greedy answer steps have no log-prob to replay (issue 8 §4.1)
                _fail("after_thinking_temperature", self.after_thinking_temperature,
                      "> 0 or None for training (a greedy T=0 answer step has no finite log-probability)")
            if self.enable_soft_thinking and self.noise == "none":
                _fail("noise", self.noise, "one of ('gumbel', 'dirichlet', 'gaussian') for training")
            if self.noise_factor != 1.0:
                _fail("noise_factor", self.noise_factor, "1.0 for training (replay needs g' = q - log p~ ~ Gumbel(0,1))")
        return self


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
