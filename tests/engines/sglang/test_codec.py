"""Trace rows <-> SoftTrace: layout, flags, per-request K, answer_start, alignment and length checks, chunks."""

import numpy as np
import pytest
import torch

from soft_thinking.core.batch import BatchStep
from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.engines.sglang.codec import (
    FLAG_FORCED,
    RowBytes,
    TraceError,
    concat_chunks,
    decode_rows,
    pack_rows,
    row_bytes,
    trace_from_rows,
)
from soft_thinking.engines.sglang.settings import SoftRequest

K = 4


def step(tokens, soft, answer, k_req=3, forced=None) -> BatchStep:
    b = len(tokens)
    ids = torch.zeros(b, K, dtype=torch.long)
    q = torch.zeros(b, K)
    for i, t in enumerate(tokens):
        ids[i, 0] = t
        if soft[i]:
            ids[i, 1:k_req] = torch.tensor([0, 9][: k_req - 1])  # a soft step whose second candidate is id 0
            q[i, :k_req] = torch.tensor([-0.5, -1.25, -2.0][:k_req])
    return BatchStep(tokens=torch.tensor(tokens), ids=ids, q=q, weights=torch.zeros(b, K), soft=torch.tensor(soft),
                     logprobs=torch.linspace(-1, -2, b, dtype=torch.float64), token_logprobs=torch.zeros(b),
                     entropy=torch.zeros(b), n_kept=torch.tensor([3 if s else 1 for s in soft]),
                     answer=torch.tensor(answer), truncated=torch.zeros(b, dtype=torch.bool),
                     forced=torch.tensor(forced or [False] * b))


def request() -> SoftRequest:
    cfg = SoftThinkingConfig(max_topk=3, temperature=0.6, after_thinking_temperature=0.3, think_end_token_ids=(7,),
                             gumbel_softmax_temperature=0.25)
    return SoftRequest(cfg, 1)


def test_rows_round_trip_into_a_soft_trace() -> None:
    tokens = [5, 11, 7, 3, 2]
    s = step(tokens, soft=[True, True, False, False, False], answer=[False, False, False, True, True],
             forced=[False, False, True, False, False])
    packed = pack_rows(s)
    assert packed.dtype == torch.uint8 and packed.shape == (5, row_bytes(K)) == (5, 8 * K + 7)
    rows = [RowBytes(packed)[i] for i in range(5)]
    assert all(isinstance(r, bytes) for r in rows)
    trace = trace_from_rows(rows, tokens, request())
    assert trace.K == 3 and trace.tokens.tolist() == tokens
    assert trace.soft.tolist() == [True, True, False, False, False]
    assert trace.ids[0].tolist() == [5, 0, 9]  # soft, with a candidate id 0: still soft
    assert trace.ids[3].tolist() == [3, 0, 0] and (trace.q[2:] == 0).all()
    torch.testing.assert_close(trace.q[0], torch.tensor([-0.5, -1.25, -2.0]))
    torch.testing.assert_close(trace.logprobs, s.logprobs.float())
    assert trace.answer_start == 3 and trace.n_kept.tolist() == [3, 3, 1, 1, 1]
    assert (trace.noise, trace.tau_g, trace.temperature, trace.answer_temperature) == ("gumbel", 0.25, 0.6, 0.3)
    assert (decode_rows(rows)["flags"] & FLAG_FORCED).tolist() == [0, 0, FLAG_FORCED, 0, 0]


def test_never_answered_and_empty() -> None:
    rows = [RowBytes(pack_rows(step([5, 6], [True, True], [False, False])))[i] for i in range(2)]
    assert trace_from_rows(rows, [5, 6], request()).answer_start == 2
    assert len(trace_from_rows([], [], request())) == 0


def test_length_and_alignment_errors() -> None:
    packed = RowBytes(pack_rows(step([5, 6, 8], [True, False, False], [False, True, True])))
    rows = [packed[i] for i in range(3)]
    with pytest.raises(TraceError, match="2 rows for 3 output tokens"):
        trace_from_rows(rows[1:], [5, 6, 8], request())  # 0.5.12 kept only the last chunk
    with pytest.raises(TraceError, match="misaligned.*step 1"):
        trace_from_rows(rows, [5, 4, 8], request())
    with pytest.raises(TraceError, match="8K \\+ 7"):
        decode_rows([rows[0], rows[1][:-1]])


def test_stream_chunks_concatenate() -> None:
    packed = RowBytes(pack_rows(step([5, 6, 8, 9], [True, True, False, False], [False, False, True, True])))
    rows = [packed[i] for i in range(4)]
    whole = trace_from_rows(concat_chunks([rows[:1], rows[1:3], rows[3:]]), [5, 6, 8, 9], request())
    assert np.array_equal(whole.ids.numpy(), trace_from_rows(rows, [5, 6, 8, 9], request()).ids.numpy())
