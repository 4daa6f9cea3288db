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

Cost: the words are evaluated stacked (:func:`philox4x32_pairs`: ``[c0, c2]`` against both
multipliers at once, the ten round keys in one expression, ~11 kernel ops a round), and
:func:`block_words` evaluates every block a step needs, for every candidate, in one call; a step of
all four noise kinds (blocks 0..8) costs about what one block cost before.

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


def _pair_index(device: torch.device, ndim: int) -> Tensor:
    """``[0, 1]`` shaped ``[2, 1, ..., 1]`` (``ndim`` dims): the position in a stacked word pair."""
    return torch.arange(2, dtype=torch.int64, device=device).view(2, *([1] * (ndim - 1)))


def _pick(i: Tensor, first: int, second: int) -> Tensor:
    """The int ``first`` at pair position 0 and ``second`` at 1 (device arithmetic: no host-to-device copy).

    For ``0 <= first, second < 2^16`` only: Inductor folds ``+ - * %`` of aranges and constants into index
    expressions, which Triton evaluates in int32, so a 32-bit constant here fails to compile on a GPU
    (``Scalar 2654435769 is out of range for type int32``). :func:`_pick32` takes 32-bit constants.
    """
    if not (0 <= first <= _MASK16 and 0 <= second <= _MASK16):
        raise ValueError(f"_pick takes 16-bit constants (got {first}, {second}); use _pick32")
    return i * (second - first) + first


def _pick32(i: Tensor, first: int, second: int) -> Tensor:
    """:func:`_pick` of 32-bit constants: two 16-bit picks joined by a shift (a bitwise op, which Inductor
    computes in int64 instead of folding it into an int32 index expression)."""
    return (_pick(i, first >> 16, second >> 16) << 16) | _pick(i, first & _MASK16, second & _MASK16)


def _mulhilo(a: Tensor, m_lo: Tensor, m_hi: Tensor) -> tuple[Tensor, Tensor]:
    """``(hi, lo)`` 32-bit words of ``a * m`` for ``0 <= a, m < 2^32``, ``m = m_hi 2^16 + m_lo``, no overflow.

    ``p_lo = a m_lo``, ``p_hi = a m_hi`` (both ``< 2^48``), ``a m = p_hi 2^16 + p_lo``, so
    ``hi = (p_hi + (p_lo >> 16)) >> 16`` and ``lo = (p_lo + (p_hi mod 2^16) 2^16) mod 2^32``.
    """
    p_lo = a * m_lo
    p_hi = a * m_hi
    return ((p_lo >> 16) + p_hi) >> 16, (p_lo + ((p_hi & _MASK16) << 16)) & MASK32


def philox4x32_pairs(a: Tensor, c: Tensor, k0: Tensor, k1: Tensor) -> tuple[Tensor, Tensor]:
    """Philox4x32-10 on stacked words: ``a = [c0, c2]``, ``c = [c3, c1]`` (``[2, ...]``, broadcastable).

    Returns ``([w0, w2], [w1, w3])``. The two multiplications of a round run as one (``a`` times
    ``[M0, M1]``); the round keys of all ten rounds are built in one expression. Round ``r``
    (Random123), with ``k_r = (k0 + r W0, k1 + r W1) mod 2^32``::

        (hi0, lo0) = mulhilo(M0, c0);  (hi1, lo1) = mulhilo(M1, c2)
        c = (hi1 ^ c1 ^ k_r0,  lo1,  hi0 ^ c3 ^ k_r1,  lo0)

    The pairs alternate their order between rounds (even rounds hold ``[c0, c2]`` and
    ``[c3, c1]``, odd rounds ``[c2, c0]`` and ``[c1, c3]``), so each round costs one flip.
    """
    i = _pair_index(a.device, max(a.dim(), c.dim(), k0.dim() + 1, k1.dim() + 1))
    m_lo = (_pick(i, PHILOX_M0 & _MASK16, PHILOX_M1 & _MASK16), _pick(i, PHILOX_M1 & _MASK16, PHILOX_M0 & _MASK16))
    m_hi = (_pick(i, PHILOX_M0 >> 16, PHILOX_M1 >> 16), _pick(i, PHILOX_M1 >> 16, PHILOX_M0 >> 16))
    # round r, pair position i: key word (i + r + 1) mod 2 (even rounds [k1, k0], odd rounds [k0, k1])
    r = torch.arange(PHILOX_ROUNDS, dtype=torch.int64, device=a.device).view(-1, *([1] * i.dim()))
    word = (i + r + 1) % 2  # 0: k0, 1: k1
    w = _pick32(word, PHILOX_W0, PHILOX_W1)  # W of the key word; r W < 2^36 is int64 tensor arithmetic
    keys = ((k0 + word * (k1 - k0) + r * w) & MASK32).unbind(0)
    for rnd in range(PHILOX_ROUNDS):
        hi, lo = _mulhilo(a, m_lo[rnd % 2], m_hi[rnd % 2])
        if rnd:
            c = c.flip(0)
        a, c = hi ^ c ^ keys[rnd], lo
    return a, c


def philox4x32(counter: tuple[Tensor, Tensor, Tensor, Tensor], key: tuple[Tensor, Tensor]) -> list[Tensor]:
    """Philox4x32-10 of broadcastable int64 tensors holding 32-bit words; returns 4 words (int64).

    One round (Random123)::

        hi0, lo0 = mulhilo(M0, c0);  hi1, lo1 = mulhilo(M1, c2)
        c = (hi1 ^ c1 ^ k0,  lo1,  hi0 ^ c3 ^ k1,  lo0);   k += (W0, W1) mod 2^32
    """
    c0, c1, c2, c3 = (torch.as_tensor(c, dtype=torch.int64) & MASK32 for c in counter)
    k0, k1 = (torch.as_tensor(k, dtype=torch.int64) & MASK32 for k in key)
    shape = torch.broadcast_shapes(c0.shape, c1.shape, c2.shape, c3.shape, k0.shape, k1.shape)
    c0, c1, c2, c3 = (x.expand(shape) for x in (c0, c1, c2, c3))
    a, c = philox4x32_pairs(torch.stack([c0, c2]), torch.stack([c3, c1]), k0, k1)
    return [a[0], c[0], a[1], c[1]]


def uniform_from_word(word: Tensor) -> Tensor:
    """``u = (2 (w >> 9) + 1) / 2^24`` in float32: exact, in ``[2^-24, 1 - 2^-24]``.

    Computed as ``((w >> 8) | 1) / 2^24``: ``w >> 8 = 2 (w >> 9) + bit 8``, and ``| 1`` sets that bit.
    """
    return ((word >> 8) | 1).to(torch.float32) * (2.0**-24)


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


def _check_streams(streams: Sequence[int]) -> None:
    for s in streams:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise ValueError(f"streams must be Python ints >= 0, got {list(streams)!r}")


def block_words(seed: Tensor, position: Tensor, n_candidates: int, blocks: Sequence[int]) -> Tensor:
    """int64 words ``[B, n_candidates, 4 len(blocks)]``: column ``4 i + w`` is word ``w`` of block ``blocks[i]``.

    ``seed`` and ``position`` are ``[B]``; every block of every candidate in one Philox evaluation.
    """
    dev = position.device
    pos = (torch.as_tensor(position, dtype=torch.int64) & MASK32).view(-1, 1, 1)
    seed = torch.as_tensor(seed, dtype=torch.int64, device=dev).view(-1, 1, 1)
    blk = device_index(blocks, dev)
    cand = torch.arange(n_candidates, dtype=torch.int64, device=dev).view(1, -1, 1)
    i = _pair_index(dev, 4)
    first = i == 0
    a, c = philox4x32_pairs(torch.where(first, pos, blk.view(1, 1, -1)), i * cand, seed & MASK32, (seed >> 32) & MASK32)
    # a = [w0, w2], c = [w1, w3]: words [2 (a/c), 2 (pair), B, n, nb] -> [B, n, nb, 4], word = 2 pair + (a/c)
    words = torch.stack(torch.broadcast_tensors(a, c), dim=0)
    return words.permute(2, 3, 4, 1, 0).reshape(words.shape[2], words.shape[3], -1)


def stream_columns(streams: Sequence[int], blocks: Sequence[int]) -> list[int]:
    """The column of each stream in :func:`block_words` ``(..., blocks)``."""
    return [4 * list(blocks).index(s // 4) + s % 4 for s in streams]


def device_index(values: Sequence[int], device: torch.device) -> Tensor:
    """int64 ``values`` built on ``device`` from ``arange`` runs: no host-to-device copy (a CUDA stream
    sync, refused under ``torch.cuda.set_sync_debug_mode("error")``)."""
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][1]:
            runs[-1][1] += 1
        else:
            runs.append([v, v + 1])
    parts = [torch.arange(a, b, dtype=torch.int64, device=device) for a, b in runs]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def select_columns(x: Tensor, cols: Sequence[int]) -> Tensor:
    """``x[..., cols]``: a slice when ``cols`` is a run, else one ``index_select``."""
    if list(cols) == list(range(cols[0], cols[0] + len(cols))):
        return x[..., cols[0]: cols[0] + len(cols)]
    return x.index_select(-1, device_index(cols, x.device))


def counter_uniforms(seed: Tensor, position: Tensor, n_candidates: int, streams: Sequence[int]) -> Tensor:
    """``u [B, n_candidates, len(streams)]``: ``u[b, k, i]`` = stream ``streams[i]`` of candidate ``k``.

    ``seed`` and ``position`` are ``[B]``. The blocks the streams need are computed in one
    Philox evaluation and every word of a block is used, so the streams of one block cost nothing extra.
    """
    _check_streams(streams)
    position = torch.as_tensor(position, dtype=torch.int64)
    if not streams:
        return torch.empty(*position.shape, n_candidates, 0, dtype=torch.float32, device=position.device)
    blocks = sorted({s // 4 for s in streams})
    words = block_words(seed, position, n_candidates, blocks)
    return uniform_from_word(select_columns(words, stream_columns(streams, blocks)))


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
