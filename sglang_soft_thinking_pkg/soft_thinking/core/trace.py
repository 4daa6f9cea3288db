"""The rollout -> trainer contract (spec §2).

A rollout ships one :class:`SoftTrace` per generated sequence; the trainer pads a list of them
into a :class:`TraceBatch` with :func:`collate_traces` and replays the soft inputs from ``ids``
and ``q`` (spec §3). Weights and RNG state are never shipped: the trainer rebuilds the weights
from ``q`` and ``tau_g``.

What ``q`` holds per noise kind (soft steps; discrete steps hold zeros):

- ``gumbel``:    ``q = log(p~ + 1e-6) + g``, before the division by ``tau_g``;
- ``dirichlet`` / ``gaussian``: the raw draws ``x`` (weights ``x / sum x``);
- ``none``:      ``p~`` itself.

The ``soft`` flag is the only truth about whether a step was soft: a soft step whose other
candidates happen to be id 0 (``ids = [5, 0, 0]``) is still soft, and nothing here infers
"discrete" from the ids.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from soft_thinking.core.config import NOISE_KINDS

__all__ = ["TRACE_FORMAT_VERSION", "SoftTrace", "TraceBatch", "collate_traces"]

TRACE_FORMAT_VERSION = 1

# field name -> (dtype in memory, dtype on the wire)
_ARRAY_FIELDS: dict[str, tuple[torch.dtype, np.dtype]] = {
    "tokens": (torch.int64, np.dtype("<i4")),
    "ids": (torch.int32, np.dtype("<i4")),
    "q": (torch.float32, np.dtype("<f4")),
    "logprobs": (torch.float32, np.dtype("<f4")),
}
_INT32_MAX = 2**31 - 1


@dataclass(eq=False)
class SoftTrace:
    """One generated sequence of ``T`` steps with ``K`` candidates per step.

    Fields (``T`` = number of response steps):

    - ``tokens``   int64 [T]: visible token of each step;
    - ``ids``      int32 [T, K]: candidate ids sorted by weight (descending); discrete steps
      ``[token, 0, ..., 0]``;
    - ``q``        float32 [T, K]: see the module docstring; discrete steps zeros;
    - ``soft``     bool [T]: whether the step's input was a mixture;
    - ``logprobs`` float32 [T]: rollout-time log-prob of each step (replay-parity metric);
    - ``noise``: one of ``NOISE_KINDS``; ``tau_g``: Gumbel-softmax temperature;
    - ``temperature``: thinking-phase temperature; ``answer_temperature``: answer-phase one;
    - ``answer_start``: first step sampled with the answer-phase settings (``T`` if never
      reached, 0 for a discrete-mode rollout);
    - ``n_kept``   int16 [T] or None: candidates that survived filtering at each step (1 for
      discrete steps). Optional; the trainer needs it for ``degenerate_as_discrete`` and the
      "one surviving candidate" metric.
    """

    tokens: Tensor
    ids: Tensor
    q: Tensor
    soft: Tensor
    logprobs: Tensor
    noise: str
    tau_g: float
    temperature: float
    answer_temperature: float
    answer_start: int
    n_kept: Tensor | None = None

    # -- basic properties ---------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def K(self) -> int:  # noqa: N802 - the spec's name for the candidate count
        return int(self.ids.shape[-1])

    @property
    def soft_share(self) -> float:
        """Fraction of steps that were soft (0.0 for an empty trace)."""
        n = len(self)
        return float(self.soft.sum().item()) / n if n else 0.0

    def step_temperatures(self) -> Tensor:
        """float32 [T]: ``temperature`` for ``t < answer_start``, ``answer_temperature`` after."""
        t = torch.arange(len(self), device=self.tokens.device)
        return torch.where(
            t < self.answer_start,
            torch.tensor(self.temperature, dtype=torch.float32, device=t.device),
            torch.tensor(self.answer_temperature, dtype=torch.float32, device=t.device),
        )

    # -- validation ---------------------------------------------------------------------------
    def validate(self) -> SoftTrace:
        """Check shapes, dtypes and the discrete-row convention; raise ``ValueError`` naming the field."""

        def fail(name: str, why: str) -> None:
            raise ValueError(f"SoftTrace.{name}: {why}")

        expected = {"tokens": torch.int64, "ids": torch.int32, "q": torch.float32, "soft": torch.bool}
        expected["logprobs"] = torch.float32
        for name, dtype in expected.items():
            value = getattr(self, name)
            if not isinstance(value, Tensor):
                fail(name, f"must be a torch.Tensor, got {type(value).__name__}")
            if value.dtype != dtype:
                fail(name, f"dtype must be {dtype}, got {value.dtype}")
        if self.tokens.dim() != 1:
            fail("tokens", f"must be 1-D [T], got shape {tuple(self.tokens.shape)}")
        T = len(self)
        if self.ids.dim() != 2 or self.ids.shape[0] != T or self.ids.shape[1] < 1:
            fail("ids", f"must have shape [T={T}, K>=1], got {tuple(self.ids.shape)}")
        if tuple(self.q.shape) != tuple(self.ids.shape):
            fail("q", f"must have the shape of ids {tuple(self.ids.shape)}, got {tuple(self.q.shape)}")
        for name in ("soft", "logprobs"):
            if tuple(getattr(self, name).shape) != (T,):
                fail(name, f"must have shape [T={T}], got {tuple(getattr(self, name).shape)}")
        if torch.isnan(self.q).any() or torch.isinf(self.q).any():
            fail("q", "must be finite")
        if torch.isnan(self.logprobs).any():
            fail("logprobs", "must not contain NaN")
        if self.noise not in NOISE_KINDS:
            fail("noise", f"{self.noise!r} is not one of {NOISE_KINDS}")
        if not (math.isfinite(self.tau_g) and self.tau_g > 0):
            fail("tau_g", f"must be a finite value > 0, got {self.tau_g!r}")
        for name in ("temperature", "answer_temperature"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                fail(name, f"must be a finite value >= 0, got {value!r}")
        if isinstance(self.answer_start, bool) or not isinstance(self.answer_start, int):
            fail("answer_start", f"must be an int, got {type(self.answer_start).__name__}")
        if not 0 <= self.answer_start <= T:
            fail("answer_start", f"must lie in [0, T={T}], got {self.answer_start}")
        if self.n_kept is not None:
            if not isinstance(self.n_kept, Tensor) or self.n_kept.dtype != torch.int16:
                fail("n_kept", "must be an int16 torch.Tensor or None")
            if tuple(self.n_kept.shape) != (T,):
                fail("n_kept", f"must have shape [T={T}], got {tuple(self.n_kept.shape)}")
            if T and (int(self.n_kept.min()) < 1 or int(self.n_kept.max()) > self.K):
                fail("n_kept", f"values must lie in [1, K={self.K}]")
        discrete = ~self.soft
        if discrete.any():
            if (self.ids[discrete, 1:] != 0).any():
                fail("ids", "discrete steps (soft=False) must be [token, 0, ..., 0]")
            if (self.ids[discrete, 0].to(torch.int64) != self.tokens[discrete]).any():
                fail("ids", "a discrete step's ids[t, 0] must equal tokens[t]")
            if (self.q[discrete] != 0).any():
                fail("q", "discrete steps (soft=False) must hold zeros")
        return self

    # -- editing ------------------------------------------------------------------------------
    def truncate(self, n: int) -> SoftTrace:
        """The first ``n`` steps (``n >= T`` returns an unchanged copy); ``answer_start`` is capped at ``n``."""
        if n < 0:
            raise ValueError(f"truncate: n must be >= 0, got {n}")
        n = min(n, len(self))
        return replace(
            self,
            tokens=self.tokens[:n].clone(),
            ids=self.ids[:n].clone(),
            q=self.q[:n].clone(),
            soft=self.soft[:n].clone(),
            logprobs=self.logprobs[:n].clone(),
            answer_start=min(self.answer_start, n),
            n_kept=None if self.n_kept is None else self.n_kept[:n].clone(),
        )

    def equal(self, other: SoftTrace) -> bool:
        """Exact equality of every array (``torch.equal``) and every scalar."""
        same_kept = (self.n_kept is None) == (other.n_kept is None) and (
            self.n_kept is None or torch.equal(self.n_kept, other.n_kept)
        )
        return (
            all(torch.equal(getattr(self, f), getattr(other, f)) for f in (*_ARRAY_FIELDS, "soft"))
            and self._scalars() == other._scalars()
            and same_kept
        )

    # -- serialization ------------------------------------------------------------------------
    def _scalars(self) -> dict[str, Any]:
        return {
            "noise": self.noise,
            "tau_g": float(self.tau_g),
            "temperature": float(self.temperature),
            "answer_temperature": float(self.answer_temperature),
            "answer_start": int(self.answer_start),
        }

    def to_bytes(self, compress: bool = False) -> bytes:
        """Compact binary form: an ``.npz`` archive of int32/float32 arrays, ``soft`` bit-packed,
        plus a JSON header (as a uint8 array) with the scalars, ``T``, ``K`` and the format version.
        """
        T = len(self)
        if T and (int(self.tokens.min()) < 0 or int(self.tokens.max()) > _INT32_MAX):
            raise ValueError("SoftTrace.tokens: ids outside the int32 range cannot be serialized")
        header = {"version": TRACE_FORMAT_VERSION, "T": T, "K": self.K, **self._scalars()}
        arrays = {
            name: getattr(self, name).detach().cpu().numpy().astype(wire)
            for name, (_, wire) in _ARRAY_FIELDS.items()
        }
        arrays["soft"] = np.packbits(self.soft.detach().cpu().numpy())
        if self.n_kept is not None:
            arrays["n_kept"] = self.n_kept.detach().cpu().numpy().astype("<i2")
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        (np.savez_compressed if compress else np.savez)(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> SoftTrace:
        """Inverse of :meth:`to_bytes` (either compression); the result is validated."""
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            header = json.loads(archive["header"].tobytes().decode())
            if header.get("version") != TRACE_FORMAT_VERSION:
                raise ValueError(f"SoftTrace: unsupported format version {header.get('version')!r}")
            T, K = int(header["T"]), int(header["K"])
            tensors = {
                name: torch.from_numpy(archive[name].astype(wire.newbyteorder("="))).to(dtype)
                for name, (dtype, wire) in _ARRAY_FIELDS.items()
            }
            soft = np.unpackbits(archive["soft"], count=T).astype(bool)
            if "n_kept" in archive.files:
                tensors["n_kept"] = torch.from_numpy(archive["n_kept"].astype(np.int16))
        tensors["ids"] = tensors["ids"].reshape(T, K)
        tensors["q"] = tensors["q"].reshape(T, K)
        return cls(soft=torch.from_numpy(soft), **tensors, **_scalar_args(header)).validate()

def _scalar_args(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "noise": str(d["noise"]),
        "tau_g": float(d["tau_g"]),
        "temperature": float(d["temperature"]),
        "answer_temperature": float(d["answer_temperature"]),
        "answer_start": int(d["answer_start"]),
    }


@dataclass(eq=False)
class TraceBatch:
    """A right-padded batch of ``B`` traces, ``T`` = the longest (or ``pad_to``).

    Padding positions: ``tokens``/``ids``/``q`` 0, ``soft`` and ``mask`` False, ``logprobs`` 0,
    ``temperatures`` 1.0.
    """

    tokens: Tensor  # int64 [B, T]
    ids: Tensor  # int64 [B, T, K]
    q: Tensor  # float32 [B, T, K]
    soft: Tensor  # bool [B, T]
    logprobs: Tensor  # float32 [B, T]
    temperatures: Tensor  # float32 [B, T]
    mask: Tensor  # bool [B, T], the response mask
    tau_g: Tensor  # float32 [B]
    noise: str
    n_kept: Tensor | None = None  # int64 [B, T] (1 at padding) when every trace has it

    @property
    def batch_size(self) -> int:
        return int(self.tokens.shape[0])

    def __len__(self) -> int:
        return self.batch_size

    def to(self, device: torch.device | str) -> TraceBatch:
        """The same batch with every tensor on ``device``."""
        return TraceBatch(
            tokens=self.tokens.to(device),
            ids=self.ids.to(device),
            q=self.q.to(device),
            soft=self.soft.to(device),
            logprobs=self.logprobs.to(device),
            temperatures=self.temperatures.to(device),
            mask=self.mask.to(device),
            tau_g=self.tau_g.to(device),
            noise=self.noise,
            n_kept=None if self.n_kept is None else self.n_kept.to(device),
        )


def collate_traces(traces: Sequence[SoftTrace], pad_to: int | None = None) -> TraceBatch:
    """Validate and right-pad ``traces`` into a :class:`TraceBatch` of length ``pad_to`` (default: longest).

    All traces must share ``K`` and ``noise``; a trace longer than ``pad_to`` is an error (cut it
    with :meth:`SoftTrace.truncate` first). Errors name the offending index.
    """
    if len(traces) == 0:
        raise ValueError("collate_traces: empty list of traces")
    for i, trace in enumerate(traces):
        try:
            trace.validate()
        except ValueError as err:
            raise ValueError(f"collate_traces: trace {i}: {err}") from err
    K, noise = traces[0].K, traces[0].noise
    for i, trace in enumerate(traces):
        if trace.K != K:
            raise ValueError(f"collate_traces: trace {i} has K={trace.K}, trace 0 has K={K}")
        if trace.noise != noise:
            raise ValueError(f"collate_traces: trace {i} has noise={trace.noise!r}, trace 0 has {noise!r}")
    longest = max(len(t) for t in traces)
    T = longest if pad_to is None else pad_to
    if T < longest:
        i = max(range(len(traces)), key=lambda j: len(traces[j]))
        raise ValueError(
            f"collate_traces: trace {i} has {longest} steps > pad_to={pad_to}; truncate it first"
        )

    B = len(traces)
    batch = TraceBatch(
        tokens=torch.zeros(B, T, dtype=torch.int64),
        ids=torch.zeros(B, T, K, dtype=torch.int64),
        q=torch.zeros(B, T, K, dtype=torch.float32),
        soft=torch.zeros(B, T, dtype=torch.bool),
        logprobs=torch.zeros(B, T, dtype=torch.float32),
        temperatures=torch.ones(B, T, dtype=torch.float32),
        mask=torch.zeros(B, T, dtype=torch.bool),
        tau_g=torch.tensor([t.tau_g for t in traces], dtype=torch.float32),
        noise=noise,
        n_kept=torch.ones(B, T, dtype=torch.int64) if all(t.n_kept is not None for t in traces) else None,
    )
    for b, trace in enumerate(traces):
        n = len(trace)
        batch.tokens[b, :n] = trace.tokens
        batch.ids[b, :n] = trace.ids.to(torch.int64)
        batch.q[b, :n] = trace.q
        batch.soft[b, :n] = trace.soft
        batch.logprobs[b, :n] = trace.logprobs
        batch.temperatures[b, :n] = trace.step_temperatures()
        batch.mask[b, :n] = True
        if batch.n_kept is not None:
            batch.n_kept[b, :n] = trace.n_kept.to(torch.int64)
    return batch
