"""PhaseState: per-row think-end sequences and Cold Stop settings, rows joining/leaving, slot-table writes."""

import random

import pytest
import torch

from soft_thinking.core.phase import PhaseState, PhaseTracker

# (think-end ids, entropy threshold, length threshold, soft)
ROWS = [((7,), 0.5, 2, True), ((8, 9), 0.0, 256, True), ((), 0.0, 256, True), ((5, 6, 5), 0.7, 3, True),
        ((7,), 0.5, 2, False), ((9, 9), 0.4, 1, True)]


def reference_run(row, tokens: list[int], entropies: list[float]) -> list[tuple[int, bool, bool]]:
    """Per-step (forced token, ended, thinking) of one row, in plain Python from the spec's rules."""
    end, thr, length, soft = row
    thinking, run, piece, window = soft, 0, -1, []
    out = []
    for tok, h in zip(tokens, entropies):
        if thr > 0 and end:
            low = thinking and piece < 0 and h < thr
            run = run + 1 if low else 0
            if low and run >= length:
                piece = 0
        forced = end[piece] if piece >= 0 and end else -1
        tok = forced if forced >= 0 else tok
        window = (window + [tok])[-max(len(end), 1):]
        ended = bool(end) and thinking and window[-len(end):] == list(end)
        piece = piece + 1 if piece >= 0 and not ended and piece + 1 < len(end) else -1
        thinking = thinking and not ended
        out.append((forced, ended, thinking))
    return out


def streams(seed: int, steps: int) -> tuple[list[list[int]], list[list[float]]]:
    rs = random.Random(seed)
    toks = [[rs.choice([1, 2, 5, 6, 7, 8, 9]) for _ in range(steps)] for _ in ROWS]
    ents = [[rs.choice([0.1, 0.3, 0.6, 2.0]) for _ in range(steps)] for _ in ROWS]
    return toks, ents


def step_state(state: PhaseState, toks: list[int], ents: list[float]) -> tuple[PhaseState, list]:
    state, forced = state.forced_tokens(torch.tensor(ents, dtype=torch.float32))
    tokens = torch.where(forced >= 0, forced, torch.tensor(toks))
    state, ended = state.update(tokens)
    return state, list(zip(forced.tolist(), ended.tolist(), state.thinking.tolist()))


@pytest.mark.parametrize("seed", range(4))
def test_batched_rows_follow_the_rules_per_row(seed: int) -> None:
    steps = 40
    toks, ents = streams(seed, steps)
    state = PhaseState.new(len(ROWS), [r[0] for r in ROWS], soft_thinking=[r[3] for r in ROWS],
                           entropy_threshold=[r[1] for r in ROWS], length_threshold=[r[2] for r in ROWS])
    got = [[] for _ in ROWS]
    for t in range(steps):
        state, out = step_state(state, [tk[t] for tk in toks], [e[t] for e in ents])
        for r, o in enumerate(out):
            got[r].append(o)
    for r, row in enumerate(ROWS):
        assert got[r] == reference_run(row, toks[r], ents[r]), r
    assert any(o[1] for g in got for o in g)  # some thinking did end
    assert any(o[0] >= 0 for g in got for o in g)  # Cold Stop forced something


def test_rows_join_leave_and_live_in_a_slot_table() -> None:
    """Each row's trajectory is the same alone, in a batch with others joining/leaving, and in a table."""
    steps = 30
    toks, ents = streams(11, steps)
    solo = [reference_run(row, toks[r], ents[r]) for r, row in enumerate(ROWS)]
    arrive = [0, 3, 3, 7, 12, 0]
    leave = [30, 20, 25, 30, 28, 9]

    def fresh(r: int) -> PhaseState:
        row = ROWS[r]
        return PhaseState.new(1, row[0], soft_thinking=row[3], entropy_threshold=row[1], length_threshold=row[2])

    # concat/select batch
    members: list[int] = []
    state: PhaseState | None = None
    # slot table of 8 rows (width 4), requests placed in reverse slots
    table = PhaseState.new(8, [(0, 0, 0, 0)] * 8, soft_thinking=False)
    slot = {r: 7 - r for r in range(len(ROWS))}
    got = {r: [] for r in range(len(ROWS))}
    got_table = {r: [] for r in range(len(ROWS))}
    for t in range(steps + 1):
        for r in range(len(ROWS)):
            if arrive[r] == t:
                state = fresh(r) if state is None else PhaseState.cat([state, fresh(r)])
                members.append(r)
                table.scatter_(torch.tensor([slot[r]]), fresh(r))
        keep = [i for i, r in enumerate(members) if leave[r] > t]
        state = state.select(torch.tensor(keep, dtype=torch.long))
        members = [members[i] for i in keep]
        if not members or t == steps:
            break
        pos = {r: t - arrive[r] for r in members}
        state, out = step_state(state, [toks[r][pos[r]] for r in members], [ents[r][pos[r]] for r in members])
        for r, o in zip(members, out):
            got[r].append(o)
        order = members[::-1]  # the table's rows come in another order each step
        idx = torch.tensor([slot[r] for r in order])
        part, out = step_state(table.select(idx), [toks[r][pos[r]] for r in order], [ents[r][pos[r]] for r in order])
        table.scatter_(idx, part)
        for r, o in zip(order, out):
            got_table[r].append(o)
    for r in range(len(ROWS)):
        n = len(got[r])
        assert n == min(leave[r], steps) - arrive[r]
        assert got[r] == solo[r][:n] and got_table[r] == solo[r][:n], r


def test_tracker_is_an_in_place_view() -> None:
    tr = PhaseTracker(2, (4, 5), soft_thinking=True, entropy_threshold=0.5, length_threshold=1)
    assert tr.forced_tokens(torch.tensor([0.1, 1.0])).tolist() == [4, -1]
    assert tr.update(torch.tensor([4, 5])).tolist() == [False, False]
    assert tr.forced_tokens(torch.tensor([1.0, 1.0])).tolist() == [5, -1]
    assert tr.update(torch.tensor([5, 1])).tolist() == [True, False]
    assert tr.thinking.tolist() == [False, True] and tr.cold_stopped.tolist() == [True, False]
    tr.join(PhaseTracker(1, (3,), soft_thinking=True))
    assert tr.window.shape == (3, 2) and tr.think_end_len.tolist() == [2, 2, 1]
    tr.select(torch.tensor([2]))
    assert tr.update(torch.tensor([3])).tolist() == [True]
    with pytest.raises(AttributeError):
        _ = tr.nonexistent
    with pytest.raises(ValueError, match="rows"):
        PhaseState.new(3, [(1,), (2,)], soft_thinking=True)
