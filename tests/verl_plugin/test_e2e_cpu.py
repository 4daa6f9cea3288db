"""verl 0.9.1's real ``main_ppo`` with the plug-in, end to end on CPU (issue 10, "CPU (CI)" 1).

Tiny Qwen2 (hidden 64, 2 layers, untied embeddings), 2 gloo ranks (FSDP2, Ray logical GPUs), the
``hf_soft`` rollout, KL on (reference model), 3 steps, soft and discrete arms; metrics from verl's
own file logger. Checks: exit 0; log-space replay parity <= 1e-5 on soft and on discrete steps at
every step (steps 2-3 also prove the weight sync: the actor moved, the KL to the reference is > 0);
soft share > 0; finite loss and KL. Negative control: the same soft run with verl's plain engine
(``VERL_ENGINE_VENDOR`` not ours, launched through verl's own entry point) breaks the parity.

The default run (CI) keeps the negative control (one step, one rank): the soft and discrete arms are ``extended``
here (``pytest -m extended``) because ``test_e2e_vllm_cpu.py`` makes the same checks on a real vLLM engine (1 rank;
these run 2 gloo ranks).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_checks import ENV, check_discrete_arm, check_plain_engine_control, check_run, check_soft_arm, report
from verl_assets import make_model, make_parquets
from verl_run import run_verl

pytestmark = pytest.mark.slow

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




@pytest.mark.extended
def test_soft_arm(assets, tmp_path):
    r = run_verl("softgrpo.main_ppo", ["--config-name=cpu_tiny", *_overrides(assets)], tmp_path / "soft", ENV)
    report("soft", r)
    check_soft_arm(check_run(r, 3))


@pytest.mark.extended
def test_discrete_arm(assets, tmp_path):
    args = ["--config-name=cpu_tiny", *_overrides(assets), "soft_thinking.enable_soft_thinking=false"]
    r = run_verl("softgrpo.main_ppo", args, tmp_path / "discrete", ENV)
    report("discrete", r)
    check_discrete_arm(check_run(r, 3))


def test_negative_control_plain_engine_breaks_parity(assets, tmp_path):
    args = [f"--config-dir={CONFIG_DIR}", "--config-name=cpu_tiny", *_overrides(assets),
            "trainer.total_training_steps=1", "trainer.n_gpus_per_node=1",  # one rank: the arms above run two
            "ray_kwargs.ray_init.runtime_env.env_vars.VERL_ENGINE_VENDOR=none"]
    r = run_verl("verl.trainer.main_ppo", args, tmp_path / "plain", {**ENV, "SOFTGRPO_VERL_PLUGIN": "1"})
    report("plain engine", r)
    check_plain_engine_control(r)
