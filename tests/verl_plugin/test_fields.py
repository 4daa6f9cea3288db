"""The agent loop's output: the soft fields of ``as_dict()`` (shapes, dtypes, alignment with
``input_ids``), through verl's own ``list_of_dict_to_tensordict`` and the engine's packing."""

from __future__ import annotations

import pytest
import torch
from verl.experimental.agent_loop.agent_loop import AgentLoopMetrics, AgentLoopOutput
from verl.utils.tensordict_utils import list_of_dict_to_tensordict

from soft_thinking.core.config import SoftThinkingConfig
from soft_thinking.engines.hf.engine import SoftThinkingEngine, resolve_think_end
from soft_thinking.engines.hf.tiny import tiny_model_and_tokenizer
from softgrpo.verl_plugin.agent_loop import SoftAgentLoopOutput
from softgrpo.verl_plugin.fields import FIELD_DTYPES, TraceMismatchError, noise_code
from softgrpo.verl_plugin.packed import pack_soft

K = 5


@pytest.fixture(scope="module")
def samples():
    model, tok = tiny_model_and_tokenizer("qwen2", tie_word_embeddings=False)
    engine = SoftThinkingEngine(model, tok, device="cpu")
    soft = SoftThinkingConfig(max_topk=K, top_k=K, top_p=0.95, noise="gumbel", gumbel_softmax_temperature=0.1,
                              think_end_token_ids=resolve_think_end(tok))
    prompts = [tok.encode(p, add_special_tokens=False) for p in ("Compute 1+2.", "Hi 3+4 please.")]
    out = engine.generate(prompts, soft, max_new_tokens=10, seeds=[5, 6])
    out += engine.generate(prompts[:1], soft.replace(enable_soft_thinking=False, max_topk=1), max_new_tokens=7,
                           seeds=[7])
    return out


def _verl_output(s, response_ids=None) -> AgentLoopOutput:
    resp = list(s.token_ids) if response_ids is None else response_ids
    return AgentLoopOutput(prompt_ids=list(s.prompt_ids), response_ids=resp, response_mask=[1] * len(resp),
                           response_logprobs=s.trace.logprobs.tolist()[: len(resp)], num_turns=2,
                           metrics=AgentLoopMetrics(), extra_fields={"global_steps": 0})


def test_as_dict_fields(samples):
    dicts = []
    for s in samples:
        d = SoftAgentLoopOutput.from_output(_verl_output(s), s.trace, K).as_dict()
        p, t = len(s.prompt_ids), len(s.token_ids)
        assert {k: d[k].dtype for k in FIELD_DTYPES} == FIELD_DTYPES  # one dtype per field, every arm
        assert d["soft_ids"].shape == (p + t, K) and d["soft_q"].shape == (p + t, K)
        for k in ("soft_on", "soft_temp", "soft_kept"):
            assert d[k].shape == (p + t,)
        assert d["soft_tau_g"].shape == () and d["soft_noise"].shape == ()
        assert not d["soft_ids"][:p].any() and not d["soft_q"][:p].any() and not d["soft_on"][:p].any()
        assert d["soft_on"][p:].tolist() == s.trace.soft.int().tolist()
        assert torch.equal(d["soft_ids"][p:, : s.trace.K], s.trace.ids) and not d["soft_ids"][p:, s.trace.K:].any()
        discrete = ~s.trace.soft
        assert d["soft_ids"][p:][discrete, 0].tolist() == torch.tensor(s.token_ids)[discrete].tolist()
        assert d["soft_temp"][p:].tolist() == [1.0] * t
        assert d["soft_noise"].item() == noise_code(s.trace.noise)
        assert d["rollout_log_probs"].tolist() == s.trace.logprobs.tolist()
        d["input_ids"] = torch.cat([d["prompts"], d["responses"]])
        dicts.append({k: d[k] for k in (*FIELD_DTYPES, "input_ids")})
    assert [int(s.trace.soft.sum()) > 0 for s in samples] == [True, True, False]

    # verl stacks equal shapes and makes jagged tensors of the rest; the engine packs them row for row
    td = list_of_dict_to_tensordict(dicts)
    assert td["soft_ids"].is_nested and td["soft_tau_g"].shape == (3,)
    packed = pack_soft(td)
    on = torch.cat([torch.cat([torch.zeros(len(s.prompt_ids)), s.trace.soft.float()]) for s in samples]).bool()
    assert packed.nnz == td["input_ids"].values().shape[0] == on.shape[0]
    assert torch.equal(packed.on, on)
    assert torch.equal(packed.ids[~on & (packed.temp > 0), 0], td["input_ids"].values()[~on & (packed.temp > 0)])
    lengths = td["input_ids"].offsets().diff()
    assert torch.equal(packed.tau, torch.full((3,), 0.1).repeat_interleave(lengths))


def test_mismatch_is_an_error(samples):
    s = samples[0]
    with pytest.raises(TraceMismatchError, match="steps but the response has"):
        SoftAgentLoopOutput.from_output(_verl_output(s, list(s.token_ids[:-1])), s.trace, K)
    wrong = list(s.token_ids)
    wrong[2] = (wrong[2] + 1) % 50
    with pytest.raises(TraceMismatchError, match="token 2 differs"):
        SoftAgentLoopOutput.from_output(_verl_output(s, wrong), s.trace, K)
    with pytest.raises(Exception, match="max_topk=3"):
        SoftAgentLoopOutput.from_output(_verl_output(s), s.trace, 3)
