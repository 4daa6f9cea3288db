"""Issue 8 §4 trainer bugs: greedy (T=0) steps never reach a replay, non-finite gradients skip the
update, the rollout is collated once."""

from pathlib import Path

import pytest
import torch

from soft_thinking.core.config import ConfigError
from softgrpo.config import load_config
from softgrpo.reference import batch as batch_mod
from softgrpo.reference.checkpoint import latest_checkpoint


@pytest.mark.parametrize("key", ["soft_thinking.after_thinking_temperature", "actor_rollout_ref.rollout.temperature"])
def test_zero_temperature_is_refused_for_training_by_name(base_overrides, key: str) -> None:
    with pytest.raises(ConfigError, match=key.split(".")[-1]):
        load_config(None, [*base_overrides, f"{key}=0"])


def test_a_greedy_trace_is_refused_before_replay(make, tmp_path: Path) -> None:
    """Even if a T=0 step reaches the trainer (config check bypassed), it is an error, not NaN weights."""
    tr = make(tmp_path, "trainer.total_training_steps=1", "data.max_response_length=24")
    tr.st_cfg = tr.st_cfg.replace(after_thinking_temperature=0.0)  # bypass validation on purpose
    with pytest.raises(ConfigError, match="after_thinking_temperature"):
        tr.train_step()
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())


@pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler.step\(\)`")
def test_nonfinite_gradient_skips_the_update_and_is_counted(make, tmp_path: Path) -> None:
    tr = make(tmp_path, "trainer.total_training_steps=2", "trainer.save_freq=1", "actor_rollout_ref.actor.optim.lr=0.1")
    before = {k: v.detach().clone() for k, v in tr.model.named_parameters()}
    emb = tr.model.get_input_embeddings().weight
    handle = emb.register_hook(lambda g: torch.full_like(g, float("nan")))
    m = tr.train()
    handle.remove()
    minis = tr.cfg.data.train_batch_size // tr.cfg.actor.ppo_mini_batch_size
    assert m["actor/grad_norm_nonfinite_skips"] == minis
    assert m["actor/grad_norm_nonfinite_skips_total"] == 2 * minis
    assert all(torch.equal(v.detach(), before[k]) for k, v in tr.model.named_parameters())
    from safetensors.torch import load_file

    saved = load_file(str(latest_checkpoint(tmp_path / "checkpoints") / "model" / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in saved.values())
    state = tr.optimizer.state_dict()["state"]
    assert all(torch.isfinite(t).all() for s in state.values() for t in s.values() if torch.is_tensor(t))


def test_rollout_is_collated_once_per_step(make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = batch_mod.collate_traces

    def counting(traces, *a, **k):
        calls.append(len(traces))
        return real(traces, *a, **k)

    monkeypatch.setattr(batch_mod, "collate_traces", counting)
    tr = make(tmp_path, "trainer.total_training_steps=2", "actor_rollout_ref.actor.ppo_epochs=2")
    m = tr.train()
    assert calls == [16, 16]  # one collation of the 4 x 4 samples per step, none per micro-batch
    assert m["actor/first_minibatch_max_abs_log_ratio"] == 0.0


def test_exact_logprob_mode_is_refused_with_filters_on(base_overrides) -> None:
    """The exact density sums over all K candidates, including ones top-p/top-k filtered out of the
    rollout (p~ = 0): log pi ~ -1e4. It is allowed only when the filters keep every candidate."""
    for filt in ("actor_rollout_ref.rollout.top_p=0.95", "actor_rollout_ref.rollout.top_k=3",
                 "actor_rollout_ref.rollout.min_p=0.1"):
        with pytest.raises(ConfigError, match="logprob_mode"):
            load_config(None, [*base_overrides, "soft_thinking.logprob_mode=exact", filt])
    cfg = load_config(None, [*base_overrides, "soft_thinking.logprob_mode=exact"])  # top_p 1, top_k -1
    assert cfg.soft_thinking_config((7,)).logprob_mode == "exact"
    grpo = load_config(None, [*base_overrides, "soft_thinking.logprob_mode=exact", "trainer.arm=grpo",
                              "actor_rollout_ref.rollout.top_p=0.95"])
    assert grpo.trainer.arm == "grpo"  # discrete rollouts have no soft steps to score


def test_exact_mode_without_filters_stays_finite(make, tmp_path: Path) -> None:
    tr = make(tmp_path, "trainer.total_training_steps=1", "soft_thinking.logprob_mode=exact")
    m = tr.train()
    assert m["actor/grad_norm_nonfinite_skips"] == 0 and m["replay/max_abs_diff"] <= 1e-4


def test_validation_samples_with_val_kwargs_per_source(make, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"data_source": src, "prompt": [{"role": "user", "content": f"Compute {i}+1."}],
             "reward_model": {"ground_truth": str(i + 1), "style": "rule"}}
            for src in ("aime", "math") for i in range(2)]
    for src in ("aime", "math"):
        pq.write_table(pa.Table.from_pylist([r for r in rows if r["data_source"] == src]), tmp_path / f"{src}.parquet")
    tr = make(tmp_path / "run", "trainer.total_training_steps=1", "trainer.test_freq=1",
              f"data.val_files=[{tmp_path / 'aime.parquet'},{tmp_path / 'math.parquet'}]",
              "actor_rollout_ref.rollout.val_kwargs.do_sample=true", "actor_rollout_ref.rollout.val_kwargs.temperature=0.6",
              "actor_rollout_ref.rollout.val_kwargs.top_p=0.95", "actor_rollout_ref.rollout.val_kwargs.top_k=5",
              "actor_rollout_ref.rollout.val_kwargs.n=3")
    seen = []
    real = tr.engine.generate

    def spy(prompts, cfg, n, **kw):
        seen.append((cfg.temperature, cfg.top_p, cfg.top_k, n, len(prompts)))
        return real(prompts, cfg, n=n, **kw)

    tr.engine.generate = spy
    m = tr.validate()
    assert seen == [(0.6, 0.95, 5, 3, 4)]
    assert {"val/mean@n", "val/pass@3", "val/aime/mean@n", "val/math/mean@n"} <= set(m)
    assert tr.st_cfg.temperature == 1.0  # the rollout keeps its own settings
