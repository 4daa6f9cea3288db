"""verl 0.9.1's real ``main_ppo`` with the plug-in, end to end on CPU (issue 10, "CPU (CI)" 1).

Tiny Qwen2 (hidden 64, 2 layers, untied embeddings), 2 gloo ranks (FSDP2, Ray logical GPUs), the
``hf_soft`` rollout, KL on (reference model), 3 steps, soft and discrete arms; metrics from verl's
own file logger. Checks: exit 0; log-space replay parity <= 1e-5 on soft and on discrete steps at
every step (steps 2-3 also prove the weight sync: the actor moved, the KL to the reference is > 0);
soft share > 0; finite loss and KL. Negative control: the same soft run with verl's plain engine
(``VERL_ENGINE_VENDOR`` not ours, launched through verl's own entry point) breaks the parity.

The default run (CI) keeps the soft arm: the discrete arm and the negative control are ``extended`` here
(``pytest -m extended``) because ``test_e2e_vllm_cpu.py`` makes the same two checks on a real vLLM engine.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from verl_assets import make_model, make_parquets
from verl_run import RunResult, run_verl

pytestmark = pytest.mark.slow

PARITY = 1e-5
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "verl"


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("verl_cpu")
    model, tok = make_model(root, tie_word_embeddings=False)
    train, val = make_parquets(root, n_train=16, n_val=4)
    return {"root": root, "model": model, "tok": tok, "train": train, "val": val}


def _overrides(a: dict[str, Path]) -> list[str]:
    return [f"actor_rollout_ref.model.path={a['model']}", f"actor_rollout_ref.model.tokenizer_path={a['tok']}",
            f"data.train_files={a['train']}", f"data.val_files={a['val']}"]


ENV = {"VERL_PLATFORM": "cpu", "SOFTGRPO_GRADE_WORKERS": "1", "OMP_NUM_THREADS": "1"}


def _report(name: str, r: RunResult) -> None:
    per_step = [s["data"].get("timing_s/step") for s in r.steps]
    print(f"\n[{name}] rc={r.rc} wall={r.wall_s:.1f}s peak_pss={r.peak_bytes / 2**30:.2f}GiB s/step={per_step}")
    for s in r.steps:
        d = s["data"]
        print(f"  step {s['step']}: " + ", ".join(f"{k}={d[k]:.3g}" for k in sorted(d) if k.startswith("softgrpo/")))


def _check_run(r: RunResult, steps: int) -> list[dict]:
    assert r.rc == 0, r.tail()
    assert [s["step"] for s in r.steps] == list(range(1, steps + 1)), r.tail()
    assert r.peak_bytes < 8 * 2**30, r.peak_bytes
    return [s["data"] for s in r.steps]


def test_soft_arm(assets, tmp_path):
    r = run_verl("softgrpo.main_ppo", ["--config-name=cpu_tiny", *_overrides(assets)], tmp_path / "soft", ENV)
    _report("soft", r)
    data = _check_run(r, 3)
    for d in data:
        assert d["softgrpo/replay_max_abs_dlogp_soft"] <= PARITY, d
        assert d["softgrpo/replay_max_abs_dlogp_discrete"] <= PARITY, d
        assert d["softgrpo/soft_step_share"] > 0 and d["softgrpo/soft_steps"] > 0, d
        assert d["training/rollout_probs_diff_max"] <= PARITY, d
        for key in ("actor/pg_loss", "actor/kl_loss", "actor/loss", "actor/grad_norm"):
            assert math.isfinite(d[key]), (key, d[key])
    assert data[-1]["actor/kl_loss"] > 0  # the actor moved away from the reference...
    assert data[-1]["actor/grad_norm"] > 0  # ...so parity at steps 2-3 shows the weight sync works


@pytest.mark.extended
def test_discrete_arm(assets, tmp_path):
    args = ["--config-name=cpu_tiny", *_overrides(assets), "soft_thinking.enable_soft_thinking=false"]
    r = run_verl("softgrpo.main_ppo", args, tmp_path / "discrete", ENV)
    _report("discrete", r)
    for d in _check_run(r, 3):
        assert d["softgrpo/soft_steps"] == 0 and d["softgrpo/soft_step_share"] == 0, d
        assert d["softgrpo/discrete_steps"] > 0, d
        assert d["softgrpo/replay_max_abs_dlogp_discrete"] <= PARITY, d
        assert math.isfinite(d["actor/kl_loss"]) and math.isfinite(d["actor/pg_loss"]), d


@pytest.mark.extended
def test_negative_control_plain_engine_breaks_parity(assets, tmp_path):
    args = [f"--config-dir={CONFIG_DIR}", "--config-name=cpu_tiny", *_overrides(assets),
            "trainer.total_training_steps=1", "ray_kwargs.ray_init.runtime_env.env_vars.VERL_ENGINE_VENDOR=none"]
    r = run_verl("verl.trainer.main_ppo", args, tmp_path / "plain", {**ENV, "SOFTGRPO_VERL_PLUGIN": "1"})
    _report("plain engine", r)
    (d,) = _check_run(r, 1)
    assert "VERL_ENGINE_VENDOR='none'" in r.log  # the trainer said why
    assert d["softgrpo/soft_steps"] > 0
    assert d["softgrpo/replay_max_abs_dlogp_soft"] > 0.1, d
