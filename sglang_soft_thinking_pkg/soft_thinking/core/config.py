"""Soft-thinking sampling configuration (spec §1, §5, §6): the one object every engine reads.

:class:`SoftThinkingConfig` carries every knob of a soft-thinking (or plain discrete) rollout,
each documented once below with its default. Field names are the original project's sampling
flags (``max_topk``, ``after_thinking_top_p``, ``gumbel_softmax_temperature``, ...).

Every CLI and config loader builds it with :meth:`SoftThinkingConfig.from_flags` from a flat
mapping of flags (argparse namespace, YAML section, eval settings, SGLang ``custom_params``):
field names, the original's ``--add_noise_*`` switches (:data:`NOISE_SWITCHES`) and any
caller-supplied aliases. ``validate()`` rejects every invalid value with a :class:`ConfigError`
naming the field and the allowed range, before any work is done.
"""

from __future__ import annotations

import ast
import inspect
import math
import textwrap
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields, replace
from functools import cache
from typing import Any

from soft_thinking.core.logprob import LogProbOptions
from soft_thinking.core.noise import NOISE_KINDS, NOISE_REGISTRY, NoiseParams
from soft_thinking.errors import SoftGRPOError

LOGPROB_MODES = ("paper", "exact")

#: The original's boolean noise flags (from the noise registry). When any of them is given, ``noise``
#: is the kind of the one that is on, or ``"none"`` (plain Soft Thinking) when all are off; two on is an error.
NOISE_SWITCHES = {kind.flag: name for name, kind in NOISE_REGISTRY.items() if kind.flag}


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
    settings.
    """

    # -- mode -------------------------------------------------------------------------------
    enable_soft_thinking: bool = True
    """Soft inputs while thinking; False = plain discrete decoding from the first token."""
    max_topk: int = 5
    """K, the candidates of a soft step: the K largest entries of the filtered distribution."""

    # -- thinking-phase filters (spec §1 steps 1-2), applied in this order ---------------------
    temperature: float = 1.0
    """T of ``softmax(z / T)``; 0 = greedy (argmax token, noise-free mixture ``w = p~``)."""
    top_p: float = 0.95
    """Keep the smallest prefix of the sorted distribution whose mass reaches top_p; in (0, 1]."""
    top_k: int = 5
    """Keep the top_k most probable tokens; -1 = off."""
    min_p: float = 0.0
    """Drop tokens with ``p < min_p * max p``; 0 = off."""

    # -- answer-phase filters (the think-end step onwards) -----------------------------------
    after_thinking_temperature: float | None = None
    """Answer-phase temperature; None = ``temperature``."""
    after_thinking_top_p: float | None = None
    """Answer-phase top-p; None = ``top_p``."""
    after_thinking_top_k: int | None = None
    """Answer-phase top-k; None = ``top_k``."""
    after_thinking_min_p: float | None = None
    """Answer-phase min-p; None = ``min_p``."""

    # -- noise on the mixture (spec §1 step 4) -----------------------------------------------
    noise: str = "gumbel"
    """Noise kind: none (Soft Thinking), gumbel (SofT-GRPO), dirichlet or gaussian (ablations)."""
    gumbel_softmax_temperature: float = 0.1
    """tau_g of the Gumbel-softmax weights ``w = softmax(q / tau_g)``."""
    noise_factor: float = 1.0
    """Scale of the Gumbel noise, ``q = log(p~ + 1e-6) + noise_factor * g``; training needs 1."""
    gumbel_clamp: tuple[float, float] | None = (-1.5, 3.0)
    """Clamp of the Gumbel draw g (the original's), also applied by the paper's estimator; None = off."""
    dirichlet_alpha: float = 1.0
    """alpha of the Dirichlet noise ``x ~ Gamma(alpha * p~, 1)``."""
    gaussian_sigma: float = 0.05
    """sigma of the Gaussian noise ``x ~ N(p~, sigma^2)``."""
    gaussian_clip: float = 0.15
    """The Gaussian draw is clipped to ``p~ +- gaussian_clip``."""

    # -- phase control -----------------------------------------------------------------------
    think_end_token_ids: tuple[int, ...] = ()
    """Token ids of the think-end string (one id for ``</think>`` models, several pieces elsewhere)."""
    soft_until_eos: bool = False
    """No think-end: stay soft until the sample stops (models without a think-end token)."""
    early_stopping_entropy_threshold: float = 0.0
    """Cold Stop: entropy below which a thinking step counts as confident; 0 = off."""
    early_stopping_length_threshold: int = 256
    """Cold Stop: this many consecutive confident steps force the think-end tokens."""

    # -- trainer-side estimator options (spec §3) --------------------------------------------
    logprob_mode: str = "paper"
    """Soft-step log-likelihood: paper (clamped masked mean) or exact (unclamped sum over K)."""
    logp_floor: float = -3.0
    """The paper's estimator averages over candidates with ``log(p' + 1e-6) > logp_floor``."""
    degenerate_as_discrete: bool = False
    """Score soft steps with one surviving candidate as discrete steps (token log-prob)."""
    compat_stale_phase_mask: bool = False
    """Reproduce the original's bug: after think-end keep Gumbel-argmax with the thinking filters."""

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
        """The noise a soft step draws: none when soft thinking is off or greedy (T=0, spec §1)."""
        return "none" if self.temperature == 0 or not self.enable_soft_thinking else self.noise

    def noise_params(self) -> NoiseParams:
        """The noise settings of this config (the one derivation of :class:`NoiseParams`)."""
        return NoiseParams(
            tau_g=self.gumbel_softmax_temperature, noise_factor=self.noise_factor, gumbel_clamp=self.gumbel_clamp,
            dirichlet_alpha=self.dirichlet_alpha, gaussian_sigma=self.gaussian_sigma, gaussian_clip=self.gaussian_clip,
        )

    def logprob_options(self) -> LogProbOptions:
        """The estimator settings of this config (the one derivation of :class:`LogProbOptions`)."""
        return LogProbOptions(
            mode=self.logprob_mode, gumbel_clamp=self.gumbel_clamp, logp_floor=self.logp_floor,
            dirichlet_alpha=self.dirichlet_alpha, gaussian_sigma=self.gaussian_sigma,
            degenerate_as_discrete=self.degenerate_as_discrete,
        )

    def replace(self, **changes: Any) -> SoftThinkingConfig:
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(
                f"unknown SoftThinkingConfig field(s) {sorted(unknown)}; allowed: {[f.name for f in fields(self)]}"
            )
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able flags (lists for tuples); ``from_flags(cfg.to_dict()) == cfg``."""
        d = asdict(self)
        d["think_end_token_ids"] = list(self.think_end_token_ids)
        d["gumbel_clamp"] = None if self.gumbel_clamp is None else list(self.gumbel_clamp)
        return d

    # -- construction from flags -----------------------------------------------------------
    @classmethod
    def from_flags(cls, flags: Mapping[str, Any], aliases: Mapping[str, str] | None = None) -> SoftThinkingConfig:
        """The config of a flat mapping of flags; fields not given keep their defaults.

        - keys are field names, keys of ``aliases`` (renamed to the field they name) or the
          original's noise switches (:data:`NOISE_SWITCHES`); anything else is a
          :class:`ConfigError` that lists the accepted keys, as is a field given twice;
        - ``None`` means "not given" for a field that cannot be None (argparse's default);
        - lists become tuples (YAML / JSON).

        The result is not validated: call :meth:`validate` (with the vocabulary size when known).
        """
        aliases = dict(aliases or {})
        names = {f.name: f for f in fields(cls)}
        for alias, target in aliases.items():
            if target not in names:
                raise ConfigError(f"alias {alias!r} names no SoftThinkingConfig field ({target!r})")
        unknown = sorted(set(flags) - set(names) - set(aliases) - set(NOISE_SWITCHES))
        if unknown:
            allowed = sorted({*names, *aliases, *NOISE_SWITCHES})
            raise ConfigError(f"unknown soft-thinking flag(s) {unknown}; allowed: {allowed}")
        values: dict[str, Any] = {}
        switches = {k: v for k, v in flags.items() if k in NOISE_SWITCHES}
        for k, v in switches.items():  # a string "false" would read as on
            if v is not None and not isinstance(v, bool):
                raise ConfigError(f"soft-thinking flag {k}={v!r} is invalid: allowed true or false (a boolean)")
        if switches:
            on = [NOISE_SWITCHES[k] for k, v in switches.items() if v]
            if len(on) > 1:
                raise ConfigError(f"at most one of {list(NOISE_SWITCHES)} may be set, got {on}")
            values["noise"] = on[0] if on else "none"
        for key, value in flags.items():
            if key in NOISE_SWITCHES:
                continue
            name = aliases.get(key, key)
            if value is None and "None" not in str(names[name].type):
                continue
            if name in values and values[name] != value:
                raise ConfigError(f"soft-thinking flag {name!r} is given twice ({values[name]!r} and {key}={value!r})")
            values[name] = tuple(value) if isinstance(value, list) else value
        ids, clamp = values.get("think_end_token_ids"), values.get("gumbel_clamp")
        if isinstance(ids, tuple) and all(_integral(i) for i in ids):  # other values: validate() names them
            values["think_end_token_ids"] = tuple(int(i) for i in ids)
        if isinstance(clamp, tuple) and all(_finite(x) for x in clamp):
            values["gumbel_clamp"] = tuple(float(x) for x in clamp)
        return cls(**values)

    @classmethod
    def default(cls, name: str) -> Any:
        """The default value of field ``name``."""
        f = {f.name: f for f in fields(cls)}[name]
        return f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]

    @classmethod
    def help(cls, name: str) -> str:
        """The one-line documentation of field ``name`` and its default (for CLI help texts)."""
        return f"{field_docs()[name]} (default: {cls.default(name)!r})"

    # -- validation -----------------------------------------------------------------------
    def validate(self, *, vocab_size: int | None = None, for_training: bool = False) -> SoftThinkingConfig:
        """Check every field; raise :class:`ConfigError` naming the first bad one.

        ``for_training`` adds the constraints that replay consistency needs: the trainer
        re-derives the noise as ``g' = q - log p~`` which is only a Gumbel(0,1) draw when
        ``noise_factor == 1``, and needs ``temperature > 0`` and a stochastic noise kind.
        """
        self._check_types()
        if not isinstance(self.max_topk, int) or self.max_topk < 1:
            _fail("max_topk", self.max_topk, "an integer >= 1")
        if vocab_size is not None and self.max_topk > vocab_size:
            _fail("max_topk", self.max_topk, f"<= the vocabulary size ({vocab_size})")
        for prefix in ("", "after_thinking_"):
            t = getattr(self, prefix + "temperature")
            tp = getattr(self, prefix + "top_p")
            tk = getattr(self, prefix + "top_k")
            mp = getattr(self, prefix + "min_p")
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
        for name in ("gumbel_softmax_temperature", "noise_factor", "dirichlet_alpha", "gaussian_sigma", "gaussian_clip"):
            if not _finite(getattr(self, name)) or getattr(self, name) <= 0:
                _fail(name, getattr(self, name), "a number > 0")
        if self.gumbel_clamp is not None:
            lo_hi = tuple(self.gumbel_clamp)
            if len(lo_hi) != 2 or not all(_finite(x) for x in lo_hi) or lo_hi[0] >= lo_hi[1]:
                _fail("gumbel_clamp", self.gumbel_clamp, "None or (low, high) with low < high")
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
            drops = self.top_p < 1 or self.min_p > 0 or (self.top_k != -1 and self.top_k < self.max_topk)
            if self.logprob_mode == "exact" and self.enable_soft_thinking and drops:  # issue 8 §4.10
                _fail("logprob_mode", self.logprob_mode, "'paper' when the thinking filters drop candidates "
                      "(top_p < 1, min_p > 0 or top_k < max_topk): the exact density would sum over candidates "
                      "the rollout filtered out (log pi ~ -1e4)")
        return self


    def _check_types(self) -> None:
        """Each field against its annotation: booleans are booleans (not ``"false"``), integers are
        not floats or strings, numbers are numbers, tuples hold numbers."""
        for name, tp in _field_types().items():
            value = getattr(self, name)
            if value is None and "None" in tp:
                continue
            base = tp.replace(" | None", "")
            ok = {
                "bool": lambda v: isinstance(v, bool),
                "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
                "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
                "str": lambda v: isinstance(v, str),
                "tuple[float, float]": lambda v: isinstance(v, tuple) and all(_finite(x) for x in v),
                "tuple[int, ...]": lambda v: isinstance(v, tuple) and all(_integral(x) for x in v),
            }[base](value)
            if not ok:
                allowed = {"bool": "true or false (a boolean)", "int": "an integer", "float": "a number",
                           "str": "a string", "tuple[float, float]": "(low, high), two finite numbers",
                           "tuple[int, ...]": "a list of integer token ids"}[base]
                _fail(name, value, allowed + (" or None" if "None" in tp else ""))


@cache
def _field_types() -> dict[str, str]:
    return {f.name: str(f.type) for f in fields(SoftThinkingConfig)}


def _integral(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@cache
def field_docs() -> dict[str, str]:
    """``{field: its docstring}``, read from the class source (the docstring under each field)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(SoftThinkingConfig)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())  # type: ignore[attr-defined]
    return docs
