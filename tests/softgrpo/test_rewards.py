"""The one reward (softgrpo.rewards): verl's signature, gold format from the data source, every gold of
the shared benchmarks (JSON and verl parquet) as LaTeX and in equivalent forms, counted timeouts, any
thread, and the think-end rule (issue 8 §4.2, §4.9)."""

import inspect
import json
import re
import threading
from pathlib import Path

import pytest

from softgrpo import rewards
from softgrpo.config import load_config
from softgrpo.rewards import STATUS_COUNTS, RewardScorer, compute_score, gold_format

JSON_SOURCES = ("aime2024", "aime2025", "amc23", "math500", "gsm8k", "olympiad_bench", "gpqa_diamond")
_INT = re.compile(r"-?\d+")


def test_signature_is_verls_custom_reward_function() -> None:
    params = list(inspect.signature(compute_score).parameters)
    assert params[:4] == ["data_source", "solution_str", "ground_truth", "extra_info"]
    assert inspect.signature(compute_score).parameters["extra_info"].default is None
    # verl's NaiveRewardManager calls it with keywords (verl/workers/reward_manager/naive.py)
    assert compute_score(data_source="aime", solution_str="</think>\\boxed{73}", ground_truth="73",
                         extra_info={"index": 0}) == 1.0


@pytest.mark.parametrize(("source", "fmt"), [
    ("arithmetic", "expr"), ("aime", "expr"), ("aime2024", "expr"), ("openai/gsm8k", "expr"), ("math", "latex"),
    ("math500", "latex"), ("amc", "latex"), ("deepscaler", "latex"), ("agentica-org/DeepScaleR-Preview-Dataset", "latex"),
    ("lighteval/MATH", "latex"), ("olympiad_bench", "latex_dollar"), ("gpqa_diamond", "choice"), ("unknown", "latex"),
])
def test_gold_format_follows_the_data_source(source: str, fmt: str) -> None:
    assert gold_format(source) == fmt
    assert gold_format(source, {"gold_format": "expr"}) == "expr"


# (gold, an equivalent answer a model may write): the paper configs' DeepScaleR/MATH golds are LaTeX
EQUIVALENT = [
    ("3\\sqrt{7}", "3\\sqrt{7}"), ("3\\sqrt{7}", "\\sqrt{63}"), ("\\sqrt{2}", "\\sqrt{2}"), ("\\sqrt{2}", "2^{1/2}"),
    ("\\pi", "\\pi"), ("2\\pi", "\\pi \\cdot 2"), ("(1,2)", "(1, 2)"), ("(1,2)", "\\left( 1, 2 \\right)"),
    ("\\frac{1}{2}", "0.5"), ("\\frac{1}{2}", "\\dfrac{1}{2}"), ("\\frac{14}{3}", "\\frac{28}{6}"), ("\\frac12", "1/2"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\frac{\\pi}{2})"), ("90^\\circ", "90"), ("204", "\\frac{408}{2}"),
]


@pytest.mark.parametrize("source", ["deepscaler", "math"])
def test_latex_golds_and_equivalent_forms_score_one(source: str) -> None:
    with RewardScorer(workers=2) as scorer:
        texts = [f"<think>work</think> The answer is $\\boxed{{{ans}}}$." for _, ans in EQUIVALENT]
        assert scorer(source, texts, [g for g, _ in EQUIVALENT]) == [1.0] * len(EQUIVALENT)
        wrong = scorer(source, ["</think>\\boxed{2\\sqrt{7}}", "</think>\\boxed{(2,1)}"], ["3\\sqrt{7}", "(1,2)"])
        assert wrong == [0.0, 0.0]


def _variants(gold: str) -> list[str]:
    """The gold boxed as written, plus equivalent LaTeX forms for integers and simple fractions."""
    out = [gold]
    if _INT.fullmatch(gold.strip()):
        out.append(f"\\frac{{{2 * int(gold)}}}{{2}}")
    m = re.fullmatch(r"\\d?frac\{(-?\d+)\}\{(\d+)\}", gold.strip())
    if m:
        out.append(f"{m.group(1)}/{m.group(2)}")
    return out


def test_every_shared_gold_scores_one_as_latex_and_in_equivalent_forms(benchmark_dir: Path) -> None:
    import pyarrow.parquet as pq

    sources, texts, golds, names = [], [], [], []

    def add(source: str, gold: object, name: str, boxed: str | None = None) -> None:
        for form in _variants(str(gold)) if boxed is None else [boxed]:
            sources.append(source)
            texts.append(f"<think>scratch</think> so the answer is \\boxed{{{form}}}.")
            golds.append(gold)
            names.append(f"{name} as {form!r}")

    for b in JSON_SOURCES:
        for i, rec in enumerate(json.loads((benchmark_dir / f"{b}.json").read_text())):
            g = rec["final_answer"]
            boxed = str(g).replace("$", "").rstrip(".") if b == "olympiad_bench" else None
            add(b, g, f"{b}.json#{i}", boxed)
    for name in ("aime", "amc", "math"):
        for i, row in enumerate(pq.read_table(benchmark_dir / f"{name}.parquet").to_pylist()):
            add(row["data_source"], row["reward_model"]["ground_truth"], f"{name}.parquet#{i}")
    assert len(set(n.split(" as ")[0] for n in names)) == 30 + 30 + 40 + 500 + 1319 + 675 + 198 + 30 + 83 + 500
    with RewardScorer(workers=2, timeout_s=20) as scorer:
        scores = scorer(sources, texts, golds)
        counts = dict(scorer.counts)
    assert [n for n, s in zip(names, scores) if s != 1.0] == []
    assert counts == {"ok": len(texts)}


def test_compute_score_works_off_the_main_thread() -> None:
    """verl calls the reward from executor threads, where math-verify's signal timeouts raise."""
    out: dict[str, object] = {}

    def worker() -> None:
        try:
            out["scores"] = [
                compute_score("math", "<think>..</think> \\boxed{\\frac{1}{2}}", "\\frac12"),
                compute_score("deepscaler", "</think> \\boxed{\\sqrt{63}}", "3\\sqrt{7}"),
                compute_score("math", "<think>\\boxed{1/2}</think> no idea", "\\frac12"),
            ]
        except BaseException as exc:  # reported to the main thread
            out["error"] = exc

    t = threading.Thread(target=worker)
    t.start()
    t.join(120)
    assert "error" not in out, out.get("error")
    assert out["scores"] == [1.0, 1.0, 0.0]
    assert STATUS_COUNTS["ok"] >= 2 and STATUS_COUNTS["no_answer"] >= 1


def test_timeouts_are_counted_not_hidden() -> None:
    with RewardScorer(workers=1, timeout_s=1.5) as scorer:
        scores = scorer("aime", ["</think>\\boxed{9^{9^{9^{9}}}}", "</think>\\boxed{2}"], ["1", "2"])
        assert scores == [0.0, 1.0]
        assert scorer.counts["timeout"] == 1 and scorer.counts["ok"] == 1


def test_no_think_end_scores_zero_by_default_and_is_configurable() -> None:
    cut = "<think>so it is \\boxed{5} but let me check"  # thinking cut at the token budget
    with RewardScorer(workers=1) as strict:
        assert strict("arithmetic", [cut, "<think>x</think>\\boxed{5}"], ["5", "5"]) == [0.0, 1.0]
        assert strict.counts["no_think_end"] == 1
    with RewardScorer(workers=1, require_think_end=False) as lenient:
        assert lenient("arithmetic", [cut], ["5"]) == [1.0]
    assert compute_score("arithmetic", cut, "5") == 0.0
    assert compute_score("arithmetic", cut, "5", None, require_think_end=False) == 1.0


def test_trainer_default_reward_requires_the_think_end(make, tmp_path: Path) -> None:
    tr = make(tmp_path / "a", "custom_reward_function.path=null", "trainer.total_training_steps=1")
    assert tr.scorer.fn is None and tr.scorer.require_think_end is True
    tr.scorer.close()
    tr = make(tmp_path / "b", "custom_reward_function.path=null", "custom_reward_function.require_think_end=false")
    assert tr.scorer.require_think_end is False
    tr.scorer.close()
    tr = make(tmp_path / "c", "custom_reward_function.path=null", "soft_thinking.soft_until_eos=true")
    assert tr.scorer.require_think_end is False  # no think-end to require
    tr.scorer.close()
    assert load_config(None, ["data.train_files=builtin:arithmetic"]).custom_reward_function.require_think_end is True


def test_module_has_one_grading_path() -> None:
    """compute_score and the batched scorer both go through grade_completions (no second copy)."""
    src = inspect.getsource(rewards)
    assert src.count("grader.grade(") == 1 and src.count("grade_completions(") == 3


# -- issue 17: the gold-format check, bounded and total grading -------------------------------------
def test_unknown_extra_info_gold_format_is_a_config_error_naming_the_allowed_ones() -> None:
    from soft_thinking.core.config import ConfigError

    with pytest.raises(ConfigError, match=r"extra_info\['gold_format'\]='mmlu' is invalid: allowed \['expr'"):
        gold_format("math", {"gold_format": "mmlu"})
    with pytest.raises(ConfigError, match="gold_format"):
        compute_score("math", "</think>\\boxed{C}", "C", {"gold_format": "letters"})
    # the given format is used, not the data source's: "The answer is C" is a choice, no LaTeX answer
    assert gold_format("math", {"gold_format": "choice"}) == "choice"
    assert compute_score("math", "</think>The answer is C", "C", {"gold_format": "choice"}) == 1.0
    assert compute_score("math", "</think>The answer is C", "C") == 0.0


MB_SOUP = "</think>" + "\\boxed{" * ((1 << 20) // 7)
BIG = "3" * 5000


def test_compute_score_grades_a_megabyte_and_a_5000_digit_answer_per_sample() -> None:
    before = STATUS_COUNTS["parse_error"] + STATUS_COUNTS["no_answer"]
    assert compute_score("aime", MB_SOUP, "5") == 0.0  # linear work: tests/eval/test_grading_bounds.py counts it
    assert STATUS_COUNTS["parse_error"] + STATUS_COUNTS["no_answer"] == before + 1
    assert compute_score("aime", f"</think>\\boxed{{{BIG}}}", BIG) == 1.0
    assert compute_score("aime", f"</think>\\boxed{{{BIG}}}", "73") == 0.0


def test_reward_scorer_keeps_the_batch_when_one_sample_fails() -> None:
    with RewardScorer(workers=1, timeout_s=10) as scorer:
        texts = ["</think>\\boxed{2}", MB_SOUP, f"</think>\\boxed{{{BIG}}}", "</think>\\boxed{" + "x^" * 5000 + "1}"]
        assert scorer("aime", texts, ["2", "5", BIG, "1"]) == [1.0, 0.0, 1.0, 0.0]
        assert scorer.counts["ok"] == 2 and sum(scorer.counts.values()) == 4
        assert [status for status, _ in scorer.failures] == ["parse_error"]  # the overlong box, with its reason
        assert "limit" in scorer.failures[0][1]


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"timeout_s": float("inf")}, "timeout_s=inf"), ({"timeout_s": 0}, "timeout_s=0"),
    ({"workers": 0}, "workers=0"), ({"workers": True}, "workers=True"),
])
def test_reward_scorer_rejects_a_bad_pool_before_the_first_batch(kwargs, named) -> None:
    from soft_thinking.core.config import ConfigError

    with pytest.raises(ConfigError, match=re.escape(named)):
        RewardScorer(**kwargs)


def test_bad_grading_environment_is_a_config_error(monkeypatch) -> None:
    from soft_thinking.core.config import ConfigError

    monkeypatch.setattr(rewards, "_grader", None)
    for name, value in (("SOFTGRPO_GRADE_TIMEOUT", "abc"), ("SOFTGRPO_GRADE_TIMEOUT", "inf"),
                        ("SOFTGRPO_GRADE_WORKERS", "0"), ("SOFTGRPO_GRADE_WORKERS", "2.5")):
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError, match="invalid: allowed"):
            rewards._shared_grader()
        monkeypatch.delenv(name)
    assert rewards._grader is None


def _picky_reward(data_source, solution_str, ground_truth, extra_info=None):
    if len(solution_str) > 1000:
        raise RecursionError("too deep")
    return float("nan") if solution_str == "nan" else float(solution_str.endswith(str(ground_truth)))


def test_custom_reward_failing_on_one_sample_fails_that_sample_alone() -> None:
    from soft_thinking.core.config import ConfigError

    scorer = RewardScorer(fn=_picky_reward)
    assert scorer("s", ["x 4", "y" * 5000, "nan", "z 5"], [4, 4, 4, 4]) == [1.0, 0.0, 0.0, 0.0]
    assert [st for st, _ in scorer.failures] == ["error", "error"]
    assert "RecursionError" in scorer.failures[0][1] and "not finite" in scorer.failures[1][1]
    assert scorer.counts == {"custom": 2, "error": 2}
    with pytest.raises(ConfigError, match="failed on all 2 samples"):  # a broken function is not zeros
        scorer("s", ["nan", "nan"], [1, 1])
