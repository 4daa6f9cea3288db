"""Every reference-trainer config shipped under configs/ parses and validates (unknown keys or bad values fail)."""

from pathlib import Path

import pytest

from softgrpo.config import load_config

# configs/eval holds eval presets and configs/verl verl's own Hydra configs (the verl plug-in's tests)
CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml")
                 if p.parent.name not in ("eval", "verl"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates(path: Path) -> None:
    cfg = load_config(path)
    st = cfg.soft_thinking_config(think_end_token_ids=(7,))
    assert st.enable_soft_thinking == (cfg.trainer.arm == "softgrpo")
    assert st.temperature == cfg.rollout.temperature


def test_paper_recipe_values() -> None:
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "paper" / "softgrpo_deepscaler_1.5b.yaml")
    loss = cfg.loss_config()
    assert (cfg.rollout.n, cfg.data.train_batch_size, cfg.actor.ppo_mini_batch_size) == (8, 64, 32)
    assert (loss.kl_loss_coef, loss.clip_ratio_low, loss.clip_ratio_c, cfg.actor.optim.lr) == (0.001, 0.2, 3.0, 1e-6)
    assert cfg.soft_thinking_config((7,)).gumbel_softmax_temperature == 0.1


@pytest.mark.parametrize("name", ["softgrpo_deepscaler_1.5b.yaml", "grpo_deepscaler_1.5b.yaml"])
def test_paper_configs_validate_at_the_papers_settings(name: str) -> None:
    """Spec §5: validation on AIME24/AMC/MATH-500 at T=0.6, top-p 0.95, top-k 5, every 40 steps."""
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "paper" / name)
    vk = cfg.rollout.val_kwargs
    assert (vk.temperature, vk.top_p, vk.top_k, vk.do_sample) == (0.6, 0.95, 5, True)
    assert cfg.trainer.test_freq == 40 and len(cfg.data.val_files) == 3
    st, n = cfg.val_soft_thinking_config(cfg.soft_thinking_config((7,)))
    assert (st.temperature, st.top_p, st.top_k, st.answer_temperature, n) == (0.6, 0.95, 5, 0.6, 1)
    assert st.enable_soft_thinking == (cfg.trainer.arm == "softgrpo")


def test_val_kwargs_default_is_verls_greedy_and_bad_values_are_named() -> None:
    from soft_thinking.core.config import ConfigError

    cfg = load_config(None, ["data.train_files=builtin:arithmetic", "soft_thinking.after_thinking_temperature=0.7"])
    st, n = cfg.val_soft_thinking_config(cfg.soft_thinking_config((7,)))
    assert (st.temperature, st.top_p, st.top_k, st.answer_temperature, n) == (0.0, 1.0, -1, 0.0, 1)
    for bad in ("temperature=-1", "top_p=1.5", "n=0"):
        with pytest.raises(ConfigError, match=f"val_kwargs.{bad.split('=')[0]}"):
            load_config(None, ["data.train_files=builtin:arithmetic", "actor_rollout_ref.rollout.val_kwargs.do_sample=true",
                               f"actor_rollout_ref.rollout.val_kwargs.{bad}"])


def test_trainer_default_dual_clip_is_verls_3() -> None:
    """The trainer's default actor config (and the shipped quickstart) pass clip_ratio_c = 3 to the loss."""
    from softgrpo.config import ActorConfig

    assert ActorConfig().clip_ratio_c == 3.0
    cfg = load_config(None, ["data.train_files=builtin:arithmetic"])
    assert cfg.loss_config().clip_ratio_c == 3.0
    quick = load_config(Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml")
    assert quick.loss_config().clip_ratio_c == 3.0


def test_compile_step_reaches_the_trainers_engine_and_a_bad_value_is_named(make, tmp_path: Path) -> None:
    """``actor_rollout_ref.rollout.compile_step``: off by default (the eager path), on when asked, typed."""
    from soft_thinking.core.config import ConfigError

    assert make(tmp_path / "eager").engine.compile_step is False
    assert make(tmp_path / "compiled", "actor_rollout_ref.rollout.compile_step=true").engine.compile_step is True
    with pytest.raises(ConfigError, match="compile_step"):
        load_config(None, ["data.train_files=builtin:arithmetic", "actor_rollout_ref.rollout.compile_step=abc"])
