"""The compiled step's pure index arithmetic fits in int32, so Inductor's Triton kernels compile on a GPU.

On an H200 (torch 2.11, Triton 3.6) the compiled sample step failed to build with "Scalar 2654435769 is
out of range for type int32": the Philox key schedule multiplied an arange by the 32-bit constant W0,
which Inductor folded into an int32 index expression. A CPU build never shows it (64-bit C++ indices),
so these tests check the aten graphs themselves (tests/index_width.py), with a negative control.
"""

from __future__ import annotations

import torch
from index_width import wide_index_in_compiled

from bench.gpu_check_lib import Ctx
from bench.gpu_check_steps import _step_inputs
from soft_thinking.core.batch import sample_step
from soft_thinking.core.rng import MASK32, PHILOX_W0, PHILOX_W1, _pair_index, block_words, philox4x32

CPU = Ctx(torch.device("cpu"), quick=True)


def test_block_words_index_arithmetic_fits_int32() -> None:
    seed = torch.tensor([2**62 + 12345, 7, 2**40], dtype=torch.int64)
    pos = torch.tensor([100, 2**31 + 5, 3], dtype=torch.int64)
    assert wide_index_in_compiled(lambda s, p: block_words(s, p, 32, [0, 1, 2]), seed, pos) == []


def test_philox_of_arange_counters_fits_int32() -> None:
    """Counters built from aranges inside the graph (the caller's arange meets the round multipliers)."""
    key = torch.tensor([0x243F6A88, 0x85A308D3], dtype=torch.int64)

    def fn(k: torch.Tensor) -> list[torch.Tensor]:
        n = torch.arange(64, dtype=torch.int64)
        return philox4x32((n, n + 1, n * 3, n % 5), (k[0], k[1]))

    assert wide_index_in_compiled(fn, key) == []


def test_sample_step_index_arithmetic_fits_int32() -> None:
    phase, rows, seed, table = _step_inputs(CPU, 8, 512, 32)
    logits = torch.randn(8, 512, generator=torch.Generator().manual_seed(0)) * 4
    pos = torch.arange(8) + 100
    found = wide_index_in_compiled(lambda z, p: sample_step(z, phase, rows, seed, p, table.spec), logits, pos)
    assert found == []


def test_negative_control_the_old_key_schedule_is_flagged() -> None:
    """The pre-fix schedule ``r (word (W1 - W0) + W0)`` of aranges: the check must name it."""

    def old_keys(k0: torch.Tensor, k1: torch.Tensor) -> torch.Tensor:
        i = _pair_index(k0.device, 2)
        r = torch.arange(10, dtype=torch.int64).view(-1, 1, 1)
        word = (i + r + 1) % 2
        return (k0 + word * (k1 - k0) + r * (word * (PHILOX_W1 - PHILOX_W0) + PHILOX_W0)) & MASK32

    found = wide_index_in_compiled(old_keys, torch.tensor([5], dtype=torch.int64), torch.tensor([9], dtype=torch.int64))
    assert found and any(str(PHILOX_W0) in line for line in found), found
    assert max(int(line.rsplit("peak |value| ", 1)[1].rstrip(")")) for line in found) >= 2**31
