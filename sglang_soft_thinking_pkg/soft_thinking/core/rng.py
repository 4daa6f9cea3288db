"""Counter-based random numbers: ``u = f(seed, position, candidate, stream)``, pure torch integer ops.

Why a counter-based generator: a draw is a pure function of its key, not of a generator's
state. The same request gives the same draws whatever batch it runs in, whichever slot it
occupies, after a retraction, on every tensor-parallel rank and in every engine (the reference
HF engine, the SGLang plug-in, the tests). No state is carried between steps, so a batched step
stays free of host synchronisation and compiles under ``torch.compile(fullgraph=True)``.

Which function: **Philox4x32-10** (Salmon, Moraes, Dror & Shaw, SC'11, "Parallel random numbers:
as easy as 1, 2, 3"; the generator behind cuRAND, PyTorch's CUDA RNG and JAX), checked here
against Random123's known-answer vectors. A 64-bit key and a 128-bit counter map bijectively
to 128 random bits, so distinct keys never share a draw, and it passes BigCrush. It is written
with int64 tensors holding 32-bit words; every product is split into 16-bit halves so that no
intermediate exceeds 2^49 (no signed overflow anywhere, hence no undefined behaviour in any
backend). Only integer ops plus one exact int->float32 conversion: CPU and CUDA give identical
bits.

Key and counter layout::

    key     = (seed mod 2^32, seed >> 32 mod 2^32)     seed: the request's 63-bit seed
    counter = (position, candidate, block, 0)           -> four 32-bit words w[0..3]
    stream s  = word s % 4 of block s // 4

``seed`` comes from :func:`soft_thinking.text.derive_seed` (``(global seed, prompt, sample)``);
``position`` is the sequence length when the step is sampled (prompt length + tokens generated
so far, i.e. SGLang's ``seq_lens`` for decode and the prompt length at prefill); ``candidate``
is the column of the draw (the k-th candidate of a soft step, 0 for a one-per-row draw).

Uniforms: the top 23 bits ``m`` of a word give ``u = (2m + 1) / 2^24`` in float32, exactly
representable, in ``[2^-24, 1 - 2^-24]``: never 0 or 1, so ``log u`` and ``log(-log u)`` are
always finite.

Streams used by the core (named so that the kinds never share a draw):

======================  ============  =====================================================
name                    stream(s)     use
======================  ============  =====================================================
``STREAM_GUMBEL``       0             Gumbel noise ``g = -log(-log u)``
``STREAM_SAMPLE``       1             discrete (answer-phase) inverse-CDF sampling
``STREAM_NORMAL``       2, 3          Box-Muller pair of the Gaussian noise
``gamma_streams(j)``    4 + 4j ...    Marsaglia-Tsang proposal ``j``: normal pair, accept u
``gamma_boost_stream``  7             the ``U^(1/a)`` boost of ``a < 1`` (block 1, word 3)
======================  ============  =====================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "STREAM_GUMBEL",
    "STREAM_NORMAL",
    "STREAM_SAMPLE",
    "counter_normal",
    "counter_uniform",
    "counter_uniforms",
    "gamma_boost_stream",
    "gamma_streams",
    "normal_from_uniforms",
    "philox4x32",
    "uniform_from_word",
]

MASK32 = 0xFFFFFFFF
_MASK16 = 0xFFFF
PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57  # round multipliers
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85  # key schedule (golden ratio, sqrt(3) - 1)
PHILOX_ROUNDS = 10

STREAM_GUMBEL = 0
STREAM_SAMPLE = 1
STREAM_NORMAL = (2, 3)


def gamma_streams(proposal: int) -> tuple[int, int, int]:
    """Streams of Marsaglia-Tsang proposal ``j``: (Box-Muller u1, u2, acceptance u) = block ``1 + j``."""
    base = 4 * (1 + proposal)
    return base, base + 1, base + 2


def gamma_boost_stream() -> int:
    """Stream of the ``Gamma(a) = Gamma(a + 1) U^(1/a)`` boost uniform (block 1, word 3)."""
    return 7


def _mulhilo(a: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """``(hi, lo)`` 32-bit words of ``a * m`` for ``0 <= a, m < 2^32``, without 64-bit overflow.

    ``a * m = a * m_hi * 2^16 + a * m_lo``; both partial products are < 2^48.
    """
    p_lo = a * (m & _MASK16)
    p_hi = a * (m >> 16)
    t = p_lo + ((p_hi & _MASK16) << 16)  # < 2^49
    return (p_hi >> 16) + (t >> 32), t & MASK32


def philox4x32(counter: tuple[Tensor, Tensor, Tensor, Tensor], key: tuple[Tensor, Tensor]) -> list[Tensor]:
    """Philox4x32-10 of broadcastable int64 tensors holding 32-bit words; returns 4 words (int64).

    One round (Random123)::

        hi0, lo0 = mulhilo(M0, c0);  hi1, lo1 = mulhilo(M1, c2)
        c = (hi1 ^ c1 ^ k0,  lo1,  hi0 ^ c3 ^ k1,  lo0);   k += (W0, W1) mod 2^32
    """
    c0, c1, c2, c3 = (torch.as_tensor(c, dtype=torch.int64) & MASK32 for c in counter)
    k0, k1 = (torch.as_tensor(k, dtype=torch.int64) & MASK32 for k in key)
    for r in range(PHILOX_ROUNDS):
        if r:
            k0 = (k0 + PHILOX_W0) & MASK32
            k1 = (k1 + PHILOX_W1) & MASK32
        hi0, lo0 = _mulhilo(c0, PHILOX_M0)
        hi1, lo1 = _mulhilo(c2, PHILOX_M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return [c0, c1, c2, c3]


def uniform_from_word(word: Tensor) -> Tensor:
    """``u = (2 (w >> 9) + 1) / 2^24`` in float32: exact, in ``[2^-24, 1 - 2^-24]``."""
    return ((word >> 9) * 2 + 1).to(torch.float32) * (2.0**-24)


def _key(seed: Tensor) -> tuple[Tensor, Tensor]:
    seed = torch.as_tensor(seed, dtype=torch.int64)
    return seed & MASK32, (seed >> 32) & MASK32


def counter_words(seed: Tensor, position: Tensor, candidate: Tensor | int, block: int) -> list[Tensor]:
    """The four words of block ``block`` for broadcastable ``seed``, ``position``, ``candidate``."""
    position = torch.as_tensor(position, dtype=torch.int64)
    cand = torch.as_tensor(candidate, dtype=torch.int64, device=position.device)
    zero = torch.zeros((), dtype=torch.int64, device=position.device)
    return philox4x32((position, cand, zero + block, zero), _key(seed))


def counter_uniform(seed: Tensor, position: Tensor, candidate: Tensor | int, stream: int = 0) -> Tensor:
    """float32 uniforms in (0, 1) of shape ``broadcast(seed, position, candidate)``.

    Typical use, ``[B, K]`` draws for a batch: ``counter_uniform(seed[:, None], pos[:, None],
    torch.arange(K), STREAM_GUMBEL)``. ``stream`` is a Python int (see the module table).
    """
    if not isinstance(stream, int) or stream < 0:
        raise ValueError(f"stream must be a Python int >= 0, got {stream!r}")
    return uniform_from_word(counter_words(seed, position, candidate, stream // 4)[stream % 4])


def counter_uniforms(seed: Tensor, position: Tensor, n_candidates: int, streams: Sequence[int]) -> Tensor:
    """``u [B, n_candidates, len(streams)]``: ``u[b, k, i]`` = stream ``streams[i]`` of candidate ``k``.

    ``seed`` and ``position`` are ``[B]``. Each Philox block is computed once and all its four
    words are used, so the streams of one block cost one evaluation per candidate.
    """
    seed = torch.as_tensor(seed, dtype=torch.int64)
    position = torch.as_tensor(position, dtype=torch.int64)
    cand = torch.arange(n_candidates, dtype=torch.int64, device=position.device)
    if not streams:
        return torch.empty(*position.shape, n_candidates, 0, dtype=torch.float32, device=position.device)
    blocks: dict[int, list[Tensor]] = {}
    for s in streams:
        if not isinstance(s, int) or s < 0:
            raise ValueError(f"streams must be Python ints >= 0, got {list(streams)!r}")
        if s // 4 not in blocks:
            blocks[s // 4] = counter_words(seed.unsqueeze(-1), position.unsqueeze(-1), cand, s // 4)
    return torch.stack([uniform_from_word(blocks[s // 4][s % 4]) for s in streams], dim=-1)


def normal_from_uniforms(u1: Tensor, u2: Tensor) -> Tensor:
    """Box-Muller: ``n = sqrt(-2 log u1) cos(2 pi u2) ~ N(0, 1)`` for independent ``u1, u2`` in (0, 1).

    Computed in float64 (the uniforms are exact in it); returns float64.
    """
    u1, u2 = u1.to(torch.float64), u2.to(torch.float64)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)


def counter_normal(seed: Tensor, position: Tensor, candidate: Tensor | int, streams: tuple[int, int] = STREAM_NORMAL) -> Tensor:
    """float64 standard normals from two counter streams (Box-Muller)."""
    return normal_from_uniforms(
        counter_uniform(seed, position, candidate, streams[0]), counter_uniform(seed, position, candidate, streams[1])
    )
