"""The embedded default: the smoke run's outputs, the warm-start stage, the failure paths and the
regression test of the warm-start recipe (two seeds reach 30% within the budget)."""

import json
from pathlib import Path

import pytest

from softgrpo.quickstart import ARMS, CHECKPOINTS, MODES
from softgrpo.quickstart.__main__ import main, parse_args
from softgrpo.quickstart.report import aggregate, k_columns, learning_failures, over_seeds
from softgrpo.reference.sft import SFTConfig


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One smoke run of every arm in this process (``--jobs 1 --arms all``), shared by the tests below."""
    out = tmp_path_factory.mktemp("quickstart") / "qs"
    assert main(["--fast", "--jobs", "1", "--arms", "all", "--out", str(out), "trainer.progress=false"]) == 0
    return out


def test_fast_quickstart_writes_every_output_and_says_smoke(fast_run: Path) -> None:
    out = fast_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "smoke"
    run = summary["runs"][0]
    assert set(run["eval"]) == set(CHECKPOINTS) == {"start", *ARMS}
    for res in run["eval"].values():
        for mode in MODES:
            p = [res[mode]["pass_at_k"][k]["value"] for k in ("1", "2", "4")]
            assert all(0.0 <= x <= 1.0 for x in p) and p == sorted(p)  # Pass@k is non-decreasing in k
            m = res[mode]["pass_at_k"]["1"]
            assert m["ci_low"] <= m["value"] <= m["ci_high"]
            assert res[mode]["num_problems"] == 8 and res[mode]["num_samples"] == 4
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert {ln["arm"] for ln in lines} == set(ARMS) and all("replay/max_abs_diff" in ln for ln in lines)
    report = (out / "report.md").read_text()
    assert report.startswith("# SMOKE RUN") and "| checkpoint | inference |" in report
    for png in ("training_curves.png", "passk.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for arm in ARMS:
        assert (out / "seed0" / arm / "final" / "model.safetensors").is_file()
    # the degenerate arm really ran with its estimator option
    ckpt = out / "seed0" / "softgrpo_degenerate" / "checkpoints" / "global_step_2"
    assert json.loads((ckpt / "config.json").read_text())["soft_thinking"]["degenerate_as_discrete"] is True


def test_side_by_side_processes_give_the_same_results(fast_run: Path, tmp_path: Path) -> None:
    """``--jobs 3`` (spawned processes, each evaluation's modes as two tasks queued behind the arms) changes only
    the wall time, and the default arms (GRPO, SofT-GRPO) give the same files as the run of every arm."""
    out = tmp_path / "qs"
    assert main(["--fast", "--jobs", "3", "--out", str(out), "trainer.progress=false"]) == 0
    run = json.loads((out / "summary.json").read_text())["runs"][0]
    assert set(run["eval"]) == {"start", "grpo", "softgrpo"} and set(run["train"]) == {"grpo", "softgrpo"}
    assert not (out / "seed0" / "softgrpo_degenerate").exists()
    assert "degenerate" not in (out / "report.md").read_text()
    assert not list((out / "seed0").glob("eval_*.*.json"))  # every mode's part merged into its checkpoint's file
    for checkpoint in ("start", "grpo", "softgrpo"):
        assert (out / "seed0" / f"eval_{checkpoint}.json").read_bytes() == \
            (fast_run / "seed0" / f"eval_{checkpoint}.json").read_bytes()
    for arm in ("grpo", "softgrpo"):
        assert (out / "seed0" / arm / "final" / "model.safetensors").read_bytes() == \
            (fast_run / "seed0" / arm / "final" / "model.safetensors").read_bytes()


@pytest.mark.parametrize("text, arms", [(None, ("grpo", "softgrpo")), ("all", tuple(ARMS)),
                                        ("softgrpo_degenerate, grpo", ("grpo", "softgrpo_degenerate"))])
def test_arms_default_to_grpo_and_softgrpo(tmp_path: Path, text: str | None, arms: tuple[str, ...]) -> None:
    args, _ = parse_args(["--out", str(tmp_path / "qs"), *(["--arms", text] if text else [])])
    assert args.arms == arms and args.checkpoints == ("start", *arms)  # in ARMS order, whatever the text's


def test_missed_warm_start_exits_nonzero_and_writes_no_report(tmp_path: Path, capsys) -> None:
    out = tmp_path / "qs"
    code = main(["--seed", "3", "--sft-max-steps", "2", "--sft-target", "0.9", "--eval-problems", "4",
                 "--sft-eval-problems", "4", "--out", str(out), "trainer.progress=false"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: warm start of seed 3 reached") and "--stage warmstart" in err
    assert not (out / "report.md").exists() and not (out / "summary.json").exists()
    assert not (out / "seed3" / "start" / "sft.json").exists()  # nothing marks a failed start as done


@pytest.mark.parametrize("argv, field", [(["--seeds", "0"], "--seeds"), (["--eval-n", "0"], "--eval-n"),
                                         (["--sft-target", "1.5"], "sft.target_accuracy"),
                                         (["actor_rollout_ref.rollout.n=1"], "rollout.n")])
def test_bad_arguments_fail_before_any_work(tmp_path: Path, capsys, argv: list[str], field: str) -> None:
    assert main([*argv, "--out", str(tmp_path / "qs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and field in err
    assert not (tmp_path / "qs").exists()


def _run(seed: int, grpo_gain: float, grpo_p1: float, start_p1: float) -> dict:
    def ev(p1: float) -> dict:
        return {m: {"pass_at_k": {"1": {"value": p1}, "2": {"value": min(1.0, 1.5 * p1)}}} for m in MODES}

    return {"seed": seed, "eval": {"start": ev(start_p1), "grpo": ev(grpo_p1), "softgrpo": ev(0.3),
                                   "softgrpo_degenerate": ev(0.35)},
            "train": {a: {"reward_first": 0.2, "reward_last": 0.2 + grpo_gain, "reward_gain": grpo_gain} for a in ARMS}}


def test_learning_check_and_over_seed_statistics() -> None:
    good = [_run(0, 0.1, 0.4, 0.2), _run(1, 0.2, 0.5, 0.25)]
    assert learning_failures(good) == []
    bad = learning_failures([*good, _run(2, -0.01, 0.4, 0.2), _run(3, 0.1, 0.19, 0.2)])
    assert [b.split(":")[0] for b in bad] == ["seed 2", "seed 3"]
    agg = aggregate(good)
    d = agg["pass_at_1_differences"]["grpo - start"]["discrete"]
    assert d["mean"] == pytest.approx(0.225) and d["sd"] == pytest.approx(0.0353553, rel=1e-5)
    # 95% t-interval with 1 degree of freedom: t = 12.706
    assert d["ci_high"] - d["mean"] == pytest.approx(12.7062047 * 0.0353553 / 2**0.5, rel=1e-5)
    assert over_seeds([0.5]) == {"mean": 0.5, "sd": 0.0, "ci_low": 0.5, "ci_high": 0.5, "seeds": 1}


@pytest.mark.slow
@pytest.mark.extended
@pytest.mark.parametrize("seed", [2, 5])
def test_warm_start_recipe_reaches_30_percent(tmp_path: Path, capsys, seed: int) -> None:
    """The regression test of issue 8: the default recipe's warm start reaches >= 30% held-out
    greedy accuracy within its step budget. One thread makes the trajectory deterministic on a
    given CPU; bench/results/warmstart.json has these seeds at 40% after 350 and 450 steps. ``extended``
    (``pytest -m extended``, 3-7 min): the 6-seed study (``bench.warmstart``) is where the recipe is judged."""
    assert main(["--stage", "warmstart", "--seed", str(seed), "--threads", "1", "--sft-target", "0.3",
                 "--out", str(tmp_path), "trainer.progress=false"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["seed"] == seed and info["greedy_accuracy"] >= 0.3 and info["steps"] <= SFTConfig().max_steps


def test_pass_at_k_columns_follow_k_numerically() -> None:
    """A summary read back from JSON has its keys sorted as strings; the report's columns must not be."""
    res = {m: {"pass_at_k": {k: {"value": 0.5} for k in ("1", "16", "2", "4", "8")}} for m in MODES}
    assert k_columns({"eval": {"start": res}}) == ["1", "2", "4", "8", "16"]
