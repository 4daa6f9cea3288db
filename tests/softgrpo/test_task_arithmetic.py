"""Tests for softgrpo.tasks.arithmetic: determinism, split disjointness, scratchpad correctness."""

from __future__ import annotations

import json
import re

import pytest

from soft_thinking.engines.hf.tiny import build_char_tokenizer
from softgrpo.tasks.arithmetic import (
    DatasetError,
    format_scratchpad,
    load_jsonl,
    make_dataset,
    make_example,
    save_jsonl,
    split_of,
)

LINE = re.compile(r"^(-?\d+)([+-])(\d+)=(-?\d+)$")
PROMPT = re.compile(r"^Compute (\d+(?:[+-]\d+)+)\.$")


@pytest.fixture(scope="module")
def sample():
    return make_dataset("train", 500, seed=7, operators=("+", "-"), num_terms=4)


def _check_row(row: dict) -> None:
    """Recompute the problem from the prompt text and check every scratchpad line against it."""
    expr = PROMPT.match(row["prompt"]).group(1)
    tokens = re.findall(r"[+-]|\d+", expr)
    numbers, ops = [int(t) for t in tokens[::2]], tokens[1::2]
    pad = row["scratchpad"]
    assert pad.startswith("<think>") and pad.count("</think>") == 1 and pad.count("<think>") == 1
    think, after = pad[len("<think>") :].split("</think>")
    assert after == "\\boxed{" + row["answer"] + "}"
    lines = think.split("\n")
    assert len(lines) == len(ops)
    acc = numbers[0]
    for line, op, num in zip(lines, ops, numbers[1:]):
        a, lop, b, c = LINE.match(line).groups()
        assert (int(a), lop, int(b)) == (acc, op, num)
        acc = acc + num if op == "+" else acc - num
        assert int(c) == acc == (int(a) + int(b) if lop == "+" else int(a) - int(b))
    assert row["answer"] == str(acc)


def test_scratchpads_are_arithmetically_right(sample):
    assert len(sample) == 500
    for row in sample:
        _check_row(row)
    assert any(int(r["answer"]) < 0 for r in sample)  # "-" was used and negatives are handled
    assert len({r["id"] for r in sample}) == len({r["prompt"] for r in sample}) == 500


def test_default_task_shape():
    rows = make_dataset("test", 50, seed=0)
    for row in rows:
        _check_row(row)
        nums = re.findall(r"\d+", row["prompt"])
        assert len(nums) == 3 and all(10 <= int(x) <= 99 for x in nums)
        assert "-" not in row["prompt"]
    assert set(rows[0]) == {"id", "prompt", "answer", "scratchpad"}


def test_known_example():
    row = make_example([12, 34, 56], ["+", "-"])
    assert row["prompt"] == "Compute 12+34-56."
    assert row["answer"] == "-10"
    assert row["scratchpad"] == "<think>12+34=46\n46-56=-10</think>\\boxed{-10}"
    assert format_scratchpad([5, 5], ["+"]) == "<think>5+5=10</think>\\boxed{10}"


def test_deterministic_and_seed_dependent():
    a = make_dataset("train", 100, seed=3)
    assert a == make_dataset("train", 100, seed=3)
    assert a[:40] == make_dataset("train", 40, seed=3)  # prefix-stable
    assert a != make_dataset("train", 100, seed=4)


def test_train_test_disjoint():
    train = make_dataset("train", 2000, seed=0)
    test = make_dataset("test", 500, seed=0)
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    assert all(split_of(PROMPT.match(r["prompt"]).group(1)) == "test" for r in test)
    # same seed, different split: the streams are independent, not filtered copies
    assert len({r["prompt"] for r in make_dataset("test", 500, seed=1)} - {r["prompt"] for r in test}) > 400


def test_char_tokenizer_round_trips_every_row(sample):
    tok = build_char_tokenizer()
    think_end = tok.convert_tokens_to_ids("</think>")
    boxed = tok.convert_tokens_to_ids("\\boxed{")
    for row in sample:
        for text in (row["prompt"], row["scratchpad"]):
            ids = tok.encode(text, add_special_tokens=False)
            assert tok.unk_token_id not in ids
            assert tok.decode(ids) == text
        ids = tok.encode(row["scratchpad"] + tok.eos_token, add_special_tokens=False)
        assert ids.count(think_end) == 1 and ids[-1] == tok.eos_token_id
        k = ids.index(think_end)
        assert ids[k + 1] == boxed
        assert tok.decode(ids[k + 2 : -2]) == row["answer"] and tok.decode(ids[-2:-1]) == "}"


def test_small_space_raises_clearly():
    # 1-digit, 2 terms, "+": 81 problems, ~8 in test: 50 cannot be found
    with pytest.raises(ValueError, match="distinct test problems"):
        make_dataset("test", 50, digits=1, num_terms=2)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"split": "dev"}, "unknown split 'dev'"),
        ({"n": -1}, "n must be"),
        ({"num_terms": 1}, "num_terms"),
        ({"digits": 0}, "digits"),
        ({"operators": ("*",)}, "operators"),
        ({"operators": ()}, "operators"),
        ({"prompt_template": "What is it?"}, "expr"),
    ],
)
def test_bad_arguments(kw, match):
    args = {"split": "train", "n": 3, **kw}
    with pytest.raises(ValueError, match=match):
        make_dataset(**args)


def test_jsonl_round_trip(tmp_path):
    rows = make_dataset("train", 20, seed=1)
    path = tmp_path / "train.jsonl"
    save_jsonl(rows, path)
    assert load_jsonl(path) == rows
    assert not list(tmp_path.glob("*.tmp-*"))


def test_load_jsonl_names_row_and_missing_key(tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [{"prompt": "a", "answer": "1"}, {"prompt": "b", "answer": "2"}, {"prompt": "c"}]
    path.write_text("\n".join(json.dumps(r) for r in lines[:2]) + "\n\n" + json.dumps(lines[2]) + "\n")
    with pytest.raises(DatasetError, match=r"row 2 \(line 4\) is missing required key 'answer'"):
        load_jsonl(path)
    assert len(load_jsonl(path, required_keys=("prompt",))) == 3
    path.write_text('{"prompt": "a", "answer": "1"}\n[1, 2]\n')
    with pytest.raises(DatasetError, match="row 1 .* expected an object"):
        load_jsonl(path)
    path.write_text('{"prompt": "a",\n')
    with pytest.raises(DatasetError, match="row 0 .* not valid JSON"):
        load_jsonl(path)
