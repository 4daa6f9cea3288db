"""The soft-replay engine on one gloo rank, without Ray: verl's real FSDP2 engine and our two additions
against the core's ``mixed_logprobs`` (the reference replay) and the rollout's own log-probs.

One packed micro-batch holds three sequences of the tiny untied Qwen2: two soft (gumbel, tau_g 0.1)
rollouts of the reference engine and one discrete rollout without a soft step.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM
from verl_assets import make_model

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.engines.hf.engine import SoftThinkingEngine, resolve_think_end
from soft_thinking.engines.hf.replay import replay_logprobs
from softgrpo.verl_plugin.fields import trace_fields
from softgrpo.verl_plugin.settings import LOGPROB_OPTIONS_KEY

K = 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import torch.distributed as dist
    from verl.plugin.platform import get_platform, set_platform

    from softgrpo.verl_plugin.platform_cpu import PlatformCPU
    from softgrpo.verl_plugin.registration import register_engines

    root = tmp_path_factory.mktemp("engine")
    model_dir, tok_dir = make_model(root, tie_word_embeddings=False)
    env_keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    saved_env = {k: os.environ.get(k) for k in env_keys}
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    previous = get_platform()
    set_platform(PlatformCPU())
    dist.init_process_group("cpu:gloo", rank=0, world_size=1)
    try:
        register_engines(cpu=True)
        yield model_dir, tok_dir
    finally:
        dist.destroy_process_group()
        set_platform(previous)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _new_engine(model_dir: Path, tok_dir: Path, vendor: str | None):
    from verl.trainer.config import CheckpointConfig
    from verl.workers.config import FSDPEngineConfig, FSDPOptimizerConfig, HFModelConfig
    from verl.workers.engine.base import EngineRegistry

    mp = {"param_dtype": "fp32", "reduce_dtype": "fp32", "buffer_dtype": "fp32"}
    model_config = HFModelConfig(path=str(model_dir), tokenizer_path=str(tok_dir), use_remove_padding=True,
                                 override_config={"attn_implementation": "sdpa"})
    engine_config = FSDPEngineConfig(strategy="fsdp2", use_torch_compile=False, mixed_precision=mp)
    old = os.environ.pop("VERL_ENGINE_VENDOR", None)
    if vendor:
        os.environ["VERL_ENGINE_VENDOR"] = vendor
    try:
        engine = EngineRegistry.new(model_type="language_model", backend="fsdp2", model_config=model_config,
                                    engine_config=engine_config, optimizer_config=FSDPOptimizerConfig(lr=1e-3),
                                    checkpoint_config=CheckpointConfig())
    finally:
        os.environ.pop("VERL_ENGINE_VENDOR", None)
        if old is not None:
            os.environ["VERL_ENGINE_VENDOR"] = old
    engine.initialize()
    return engine


def _rollouts(model_dir: Path, tok_dir: Path):
    from transformers import AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    tok = AutoTokenizer.from_pretrained(tok_dir)
    gen = SoftThinkingEngine(model, tok, device="cpu")
    prompts = [tok.encode(p, add_special_tokens=False) for p in ("Compute 3+4.", "Compute 12+5 now.", "Hi 7+1.")]
    soft = SoftThinkingConfig(enable_soft_thinking=True, max_topk=K, temperature=1.0, top_p=0.95, top_k=K,
                              noise="gumbel", gumbel_softmax_temperature=0.1,
                              think_end_token_ids=resolve_think_end(tok)).validate(for_training=True)
    discrete = soft.replace(enable_soft_thinking=False)
    samples = gen.generate(prompts[:2], soft, max_new_tokens=12, seeds=[1, 2])
    samples += gen.generate(prompts[2:], discrete, max_new_tokens=12, seeds=[3])
    return model, samples


def _micro_batch(samples, temperature: float, opts: dict | None):
    from verl.utils import tensordict_utils as tu

    rows = []
    for s in samples:
        ids = torch.tensor(s.prompt_ids + s.token_ids, dtype=torch.int64)
        row = {"input_ids": ids, "position_ids": torch.arange(ids.numel()),
               "loss_mask": torch.ones(len(s.token_ids), dtype=torch.int64)}
        row.update(trace_fields(s.trace, len(s.prompt_ids), K))
        rows.append(row)
    mb = tu.list_of_dict_to_tensordict(rows)
    tu.assign_non_tensor(mb, temperature=temperature, use_remove_padding=True, use_fused_kernels=False,
                         calculate_entropy=False)
    if opts is not None:
        tu.assign_non_tensor(mb, **{LOGPROB_OPTIONS_KEY: opts})
    return mb


def _response_logprobs(engine, mb, samples) -> list[torch.Tensor]:
    with engine.eval_mode(), torch.no_grad():
        _, out = engine.forward_step(mb, loss_function=None, forward_only=True)
    lp = out["model_output"]["log_probs"]
    return [row[len(s.prompt_ids) - 1 : len(s.prompt_ids) + len(s.token_ids) - 1] for row, s in zip(lp.unbind(), samples)]


OPTS = {"mode": "paper", "gumbel_clamp": [-1.5, 3.0], "logp_floor": -3.0, "dirichlet_alpha": 1.0,
        "dirichlet_clamp": [-5.0, 3.0], "gaussian_sigma": 0.05, "p_floor": 0.05, "degenerate_as_discrete": False}


@pytest.mark.slow
def test_engine_matches_core_and_rollout(setup):
    model_dir, tok_dir = setup
    hf_model, samples = _rollouts(model_dir, tok_dir)
    n_soft = [int(s.trace.soft.sum()) for s in samples]
    assert n_soft[0] > 0 and n_soft[1] > 0 and n_soft[2] == 0, n_soft
    engine = _new_engine(model_dir, tok_dir, vendor="softgrpo")
    assert type(engine).__name__ == "SoftFSDPEngineWithLMHeadCPU"
    got = _response_logprobs(engine, _micro_batch(samples, 1.0, OPTS), samples)

    for s, lp in zip(samples, got):
        ref, _ = replay_logprobs(hf_model, [s.prompt_ids], [s.trace], SoftThinkingConfig().logprob_options())
        core_gap = (lp - ref[0]).abs().max().item()
        rollout_gap = (lp - s.trace.logprobs).abs().max().item()
        assert core_gap <= 1e-6, (core_gap, s.trace.soft.tolist())
        assert rollout_gap <= 1e-5, rollout_gap
        assert torch.isfinite(lp).all()

    # negative control 1: without the embedding hook the soft inputs are the visible tokens
    engine._soft_hook_handle.remove()
    engine._ensure_soft_hook = lambda: None
    no_hook = _response_logprobs(engine, _micro_batch(samples, 1.0, OPTS), samples)
    gaps = [(lp - s.trace.logprobs).abs().max().item() for s, lp in zip(samples, no_hook)]
    assert gaps[0] > 1e-3 and gaps[1] > 1e-3, gaps
    assert gaps[2] <= 1e-5, gaps  # the discrete sequence does not depend on the hook

    # negative control 2: verl's plain CPU engine scores soft steps as token log-probs
    plain = _new_engine(model_dir, tok_dir, vendor=None)
    assert type(plain).__name__ == "CPUFSDPEngineWithLMHead"
    stock = _response_logprobs(plain, _micro_batch(samples, 1.0, OPTS), samples)
    gaps = [(lp - s.trace.logprobs).abs().max().item() for s, lp in zip(samples, stock)]
    assert gaps[0] > 0.1 and gaps[1] > 0.1 and gaps[2] <= 1e-5, gaps


@pytest.mark.slow
def test_engine_errors_and_gradients(setup):
    from softgrpo.verl_plugin.packed import PackedSoftError

    model_dir, tok_dir = setup
    _, samples = _rollouts(model_dir, tok_dir)
    engine = _new_engine(model_dir, tok_dir, vendor="softgrpo")
    with pytest.raises(PackedSoftError, match="softgrpo_sync"):
        _response_logprobs(engine, _micro_batch(samples, 1.0, None), samples)

    # training: the soft log-probs carry gradient to the weights, but none flows through the
    # mixtures: an embedding row gets gradient only if its token is a *discrete* input somewhere.
    mb = _micro_batch(samples, 1.0, OPTS)
    with engine.train_mode():
        inputs, output_args = engine.prepare_model_inputs(mb)
        raw = engine.module(**inputs, use_cache=False)
        lp = engine.prepare_model_outputs(raw, output_args, mb, None)["log_probs"]
        packed_on = torch.cat([torch.cat([torch.zeros(len(s.prompt_ids)), s.trace.soft.float()]) for s in samples])
        soft_label_rows = torch.roll(packed_on, -1).bool()
        lp.values()[soft_label_rows].sum().backward()
        grad = engine.module.get_input_embeddings().weight.grad
        grad = grad.full_tensor() if hasattr(grad, "full_tensor") else grad
    discrete_inputs = set()
    for s in samples:
        discrete_inputs.update(s.prompt_ids)
        discrete_inputs.update(t for t, on in zip(s.token_ids, s.trace.soft.tolist()) if not on)
    row_norm = grad.norm(dim=-1)
    others = [i for i in range(grad.shape[0]) if i not in discrete_inputs]
    assert torch.isfinite(grad).all()
    assert row_norm[others].max().item() == 0.0
    assert row_norm[sorted(discrete_inputs)].max().item() > 0.0
