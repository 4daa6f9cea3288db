"""The SGLang side of the plug-in. CPU: the trace codec adapter and the registration of the loader
(verl's sglang loader runs first); the server classes only where ``sglang`` imports. GPU runs are
marked ``gpu`` and skip without CUDA."""

from __future__ import annotations

import os

import pytest
import torch

from soft_thinking.core.batch import BatchStep
from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.engines.sglang.codec import RowBytes, pack_rows
from soft_thinking.errors import SoftGRPOError
from softgrpo.verl_plugin.sglang_trace import decode_sglang_trace, request_seed, sglang_soft_params


def _sglang_installed() -> bool:
    """By distribution metadata: other tests put stub ``sglang`` modules into sys.modules for a while."""
    import importlib.metadata

    try:
        importlib.metadata.version("sglang")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


SGLANG_INSTALLED = _sglang_installed()


def _rows_and_cfg() -> tuple[list[bytes], list[int], SoftThinkingConfig]:
    """Rows packed by the SGLang plug-in's own codec for a 2-soft, 1-answer request."""
    k = 4
    tokens = [5, 11, 3]
    ids = torch.zeros(3, k, dtype=torch.long)
    ids[:, 0] = torch.tensor(tokens)
    ids[:2, 1:3] = torch.tensor([[0, 9], [2, 8]])
    q = torch.zeros(3, k)
    q[:2, :3] = torch.tensor([[-0.5, -1.25, -2.0], [-0.1, -1.5, -3.0]])
    step = BatchStep(tokens=torch.tensor(tokens), ids=ids, q=q, weights=torch.zeros(3, k),
                     soft=torch.tensor([True, True, False]), logprobs=torch.tensor([-0.7, -1.2, -0.1], dtype=torch.float64),
                     token_logprobs=torch.zeros(3), entropy=torch.zeros(3), n_kept=torch.tensor([3, 3, 1]),
                     answer=torch.tensor([False, False, True]), truncated=torch.zeros(3, dtype=torch.bool),
                     forced=torch.zeros(3, dtype=torch.bool))
    packed = RowBytes(pack_rows(step))
    cfg = SoftThinkingConfig(max_topk=3, think_end_token_ids=(7,), gumbel_softmax_temperature=0.25)
    return [packed[i] for i in range(3)], tokens, cfg


def test_trace_codec_roundtrip_and_errors():
    rows, tokens, cfg = _rows_and_cfg()
    trace = decode_sglang_trace(rows, tokens, cfg, seed=1)
    assert trace.tokens.tolist() == tokens and trace.soft.tolist() == [True, True, False] and trace.K == 3
    assert trace.ids[0].tolist() == [5, 0, 9] and trace.tau_g == 0.25
    torch.testing.assert_close(trace.logprobs, torch.tensor([-0.7, -1.2, -0.1]))
    with pytest.raises(SoftGRPOError, match="allowed a list of bytes rows"):
        decode_sglang_trace({"tokens": [1]}, tokens, cfg, seed=1)
    with pytest.raises(SoftGRPOError, match="not a valid soft trace"):
        decode_sglang_trace(rows[1:], tokens, cfg, seed=1)  # one row per output token, or an error
    with pytest.raises(SoftGRPOError, match="not a valid soft trace"):
        decode_sglang_trace(rows, [5, 12, 3], cfg, seed=1)  # the rows' visible tokens must be the output's
    params = sglang_soft_params({"temperature": 1.0, "custom_params": {"x": 1}}, SoftThinkingConfig(max_topk=3), 42)
    custom = params["custom_params"]
    assert custom["x"] == 1 and custom["max_topk"] == 3 and custom["seed"] == 42
    assert request_seed("r-1") == request_seed("r-1") != request_seed("r-2")


def test_sglang_loader_is_registered_and_calls_verls_first(monkeypatch):
    from verl.workers.rollout.replica import RolloutReplicaRegistry

    from softgrpo.verl_plugin.registration import register_rollouts

    calls = []
    monkeypatch.setitem(RolloutReplicaRegistry._registry, "sglang", lambda: calls.append("verl") or None)
    register_rollouts()
    loader = RolloutReplicaRegistry._registry["sglang"]
    assert getattr(loader, "_softgrpo_soft_sglang", False)
    register_rollouts()  # idempotent: not wrapped twice
    assert RolloutReplicaRegistry._registry["sglang"] is loader
    if not SGLANG_INSTALLED:
        with pytest.raises(ImportError):
            loader()
        assert calls == ["verl"]  # verl's loader ran before ours needed sglang
    else:
        assert loader().__name__ == "SoftSGLangReplica" and calls == ["verl"]


def test_server_classes_where_sglang_imports():
    if not SGLANG_INSTALLED:
        pytest.skip("sglang is not installed")
    from verl.workers.rollout.sglang_rollout.async_sglang_server import SGLangHttpServer, SGLangReplica

    from softgrpo.verl_plugin.sglang_rollout import SoftSGLangHttpServer, SoftSGLangReplica

    assert issubclass(SoftSGLangHttpServer, SGLangHttpServer) and issubclass(SoftSGLangReplica, SGLangReplica)


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_two_steps_sglang_both_arms(tmp_path):
    """2 steps per arm on one GPU with SGLang: parity <= 0.01 in bf16 (spec §3)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    if not SGLANG_INSTALLED:
        pytest.skip("sglang is not installed")
    from verl_assets import make_model, make_parquets
    from verl_run import run_verl

    model, tok = make_model(tmp_path, tie_word_embeddings=False)
    train, val = make_parquets(tmp_path)
    model_path = os.environ.get("SOFTGRPO_GPU_TEST_MODEL", str(model))
    common = [f"actor_rollout_ref.model.path={model_path}", f"data.train_files={train}", f"data.val_files={val}",
              "trainer.n_gpus_per_node=1", "trainer.total_training_steps=2", "trainer.val_before_train=false",
              "data.train_batch_size=4", "data.max_prompt_length=64", "data.max_response_length=64",
              "actor_rollout_ref.actor.ppo_mini_batch_size=2", "actor_rollout_ref.rollout.n=4",
              "actor_rollout_ref.rollout.gpu_memory_utilization=0.4", "trainer.test_freq=-1", "trainer.save_freq=-1"]
    if "SOFTGRPO_GPU_TEST_MODEL" not in os.environ:
        common.append(f"actor_rollout_ref.model.tokenizer_path={tok}")
    for arm in ("true", "false"):
        r = run_verl("softgrpo.main_ppo", ["--config-name=softgrpo_trainer", *common,
                                           f"soft_thinking.enable_soft_thinking={arm}"], tmp_path / arm, {}, 900)
        assert r.rc == 0, r.tail()
        for s in r.steps:
            d = s["data"]
            assert d["softgrpo/replay_max_abs_dlogp_soft"] <= 0.01 and d["softgrpo/replay_max_abs_dlogp_discrete"] <= 0.01
