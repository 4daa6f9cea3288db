"""Every trainer config shipped under configs/ parses and validates (unknown keys or bad values fail)."""

from pathlib import Path

import pytest

from softgrpo.config import load_config

CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml") if p.parent.name != "eval")


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
