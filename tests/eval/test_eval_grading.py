"""grade_answer rules and the process-pool Grader (timeouts, dead workers)."""

import os

import pytest

from eval import grade_answer
from eval.grader import Grader, GraderError
from eval.grading import GradeResult, answer_region, last_boxed


def test_boxed_after_think_end_is_graded():
    r = grade_answer("<think>try 5</think> The answer is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}", "math500")
    assert r == GradeResult(True, "\\frac{1}{2}", "ok")


def test_equivalent_forms_and_numeric_gold():
    assert grade_answer("</think>\\boxed{0.5}", "\\frac12", "latex").correct
    assert grade_answer("</think>\\boxed{073}", 73, "aime2024").correct  # number gold, leading zero
    assert grade_answer("</think>\\boxed{1000}", "1,000", "gsm8k").correct


def test_wrong_answer_grades_wrong():
    r = grade_answer("</think> so \\boxed{74}", "73", "aime2024")
    assert (r.correct, r.status, r.extracted) == (False, "ok", "74")
    assert not grade_answer("</think>\\boxed{\\frac{1}{3}}", "\\frac{1}{2}", "math500").correct


def test_answer_only_inside_thinking_grades_wrong():
    r = grade_answer("<think>it is \\boxed{73}</think> I am not sure.", "73", "aime2024")
    assert not r.correct
    assert answer_region("<think>a</think>b</think>c") == "b</think>c"
    assert answer_region("no think end") == "no think end"


def test_markdown_bold_answer():
    r = grade_answer("</think>The final answer is **73**", "73", "aime2024")
    assert r.correct and r.extracted == "73"


def test_last_boxed_counts():
    text = "</think>first \\boxed{5}, corrected: \\boxed{7}"
    assert grade_answer(text, "7", "expr").correct
    assert not grade_answer(text, "5", "expr").correct
    assert last_boxed("\\boxed{\\frac{a}{b}} and \\boxed{x^{2}") == "\\frac{a}{b}"  # unclosed last box


def test_no_answer_and_empty_box_are_counted_statuses():
    assert grade_answer("</think>I give up.", "73", "aime2024").status == "no_answer"
    assert grade_answer("</think>\\boxed{}", "73", "aime2024").status == "no_answer"


def test_choice_benchmark():
    assert grade_answer("</think>\\boxed{C}", "C", "gpqa_diamond").correct
    assert not grade_answer("</think>\\boxed{B}", "C", "gpqa_diamond").correct


def test_bad_format_and_gold_raise_clear_errors():
    with pytest.raises(ValueError, match="benchmark_or_gold_format='mmlu'.*allowed"):
        grade_answer("x", "1", "mmlu")
    with pytest.raises(ValueError, match="gold=None"):
        grade_answer("x", None, "expr")


# --- process pool ---------------------------------------------------------------------------


def _dying_grade(completion, gold, fmt):
    if completion == "die":
        os._exit(3)
    return grade_answer(completion, gold, fmt)


def _buggy_grade(completion, gold, fmt):
    if completion == "bug":
        raise KeyError("bug in grade function")
    return grade_answer(completion, gold, fmt)


@pytest.fixture(scope="module")
def grader():
    with Grader(workers=2, timeout_s=1.5) as g:
        yield g


def test_pool_keeps_order_and_counts(grader):
    tasks = [(f"</think>\\boxed{{{i}}}", str(i if i % 2 else i + 1), "expr") for i in range(20)]
    res = grader.grade(tasks)
    assert [r.correct for r in res] == [i % 2 == 1 for i in range(20)]
    assert [r.extracted for r in res] == [str(i) for i in range(20)]


def test_pathological_answer_times_out_and_is_counted(grader):
    before_timeouts, before_restarts = grader.counts["timeout"], grader.restarts
    res = grader.grade([("</think>\\boxed{9^{9^{9^{9}}}}", "1", "expr"), ("</think>\\boxed{2}", "2", "expr")])
    assert res[0].status == "timeout" and not res[0].correct
    assert res[1] == GradeResult(True, "2", "ok")  # the other answer is unaffected
    assert grader.counts["timeout"] == before_timeouts + 1
    assert grader.restarts == before_restarts + 1
    assert grader.grade_one("</think>\\boxed{3}", "3", "expr").correct  # pool still works


def test_dead_worker_is_replaced_and_counted():
    with Grader(workers=1, timeout_s=5, grade_fn=_dying_grade) as g:
        res = g.grade([("die", "1", "expr"), ("</think>\\boxed{1}", "1", "expr")])
        assert res[0].status == "parse_error" and "worker died" in res[0].detail
        assert res[1].correct and g.restarts == 1


def test_grade_function_bug_fails_that_answer_alone_and_is_counted():
    with Grader(workers=1, timeout_s=5, grade_fn=_buggy_grade) as g:
        res = g.grade([("</think>\\boxed{1}", "1", "expr"), ("bug", "1", "expr"), ("</think>\\boxed{2}", "2", "expr")])
        assert [r.status for r in res] == ["ok", "error", "ok"]
        assert [r.correct for r in res] == [True, False, True]
        assert "KeyError" in res[1].detail and "bug in grade function" in res[1].detail
        assert g.counts["error"] == 1 and g.restarts == 0  # the worker survives a raising grade function


def test_grader_error_is_kept_for_a_pool_that_cannot_start():
    with pytest.raises(GraderError, match="did not start"):
        Grader(workers=1, timeout_s=5, startup_timeout_s=1e-9)


def test_grader_rejects_bad_arguments():
    with pytest.raises(ValueError, match="workers=0"):
        Grader(workers=0)
    with pytest.raises(ValueError, match="timeout_s=0"):
        Grader(timeout_s=0)
    for bad in (float("inf"), float("nan"), True, "10"):
        with pytest.raises(ValueError, match="allowed a finite number > 0"):
            Grader(timeout_s=bad)
