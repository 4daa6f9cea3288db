"""custom_params parsing/validation (original flag names, errors naming the key) and the server refusal matrix."""

import json
from types import SimpleNamespace

import pytest

from soft_thinking.engines.sglang.refusals import ALLOWED_ARCHITECTURES, server_refusals
from soft_thinking.engines.sglang.settings import (
    SamplingView,
    SettingsError,
    default_flags,
    parse_soft_request,
    plugin_mode,
    server_widths,
)

SOFT = {"enable_soft_thinking": True, "seed": 123, "think_end_ids": [7], "max_topk": 5}


def parse(flags, sp=None, defaults=None, **kw):
    return parse_soft_request(flags, sp or SamplingView(), defaults=defaults or {}, k_max=kw.get("k_max", 8),
                              width=kw.get("width", 8), vocab_size=kw.get("vocab_size", 100))


def test_discrete_requests_pass_through() -> None:
    assert parse(None) is None and parse({}) is None
    assert parse({"max_topk": 3}) is None  # soft thinking not enabled
    assert parse({"enable_soft_thinking": False, "seed": -4}) is None


def test_original_flag_names_and_sampling_params_fallback() -> None:
    flags = {**SOFT, "add_noise_dirichlet": True, "gumbel_softmax_temperature": 0.5, "after_thinking_top_k": 3,
             "early_stopping_entropy_threshold": 0.1, "early_stopping_length_threshold": 16, "__req__": object()}
    req = parse(flags, SamplingView(temperature=0.6, top_p=0.95, top_k=1 << 30, min_p=0.05))
    cfg = req.config
    assert (cfg.noise, cfg.gumbel_softmax_temperature, cfg.think_end_token_ids) == ("dirichlet", 0.5, (7,))
    assert (cfg.temperature, cfg.top_p, cfg.top_k, cfg.min_p) == (0.6, 0.95, -1, 0.05)  # TOP_K_ALL -> -1
    assert cfg.answer_top_k == 3 and req.seed == 123 and req.on_retract == "mark"
    # greedy: SGLang rewrote T=0 to (T=1, top_k=1); the flags' temperature wins
    g = parse({**SOFT, "temperature": 0}, SamplingView(temperature=1.0, top_k=1))
    assert g.config.temperature == 0 and g.config.effective_noise == "none"


def test_defaults_from_env_json_file_and_inline(tmp_path) -> None:
    f = tmp_path / "d.json"
    f.write_text(json.dumps({"enable_soft_thinking": True, "max_topk": 4, "top_k": 5, "think_end_ids": [7]}))
    for value in (str(f), f.read_text()):
        d = default_flags({"SOFTGRPO_SGLANG_CONFIG": value})
        req = parse({"seed": 5}, defaults=d)
        assert req.config.max_topk == 4
    assert parse({"seed": 5, "max_topk": 2}, defaults=d).config.max_topk == 2  # the request wins
    with pytest.raises(SettingsError, match="SOFTGRPO_SGLANG_CONFIG"):
        default_flags({"SOFTGRPO_SGLANG_CONFIG": str(tmp_path / "missing.json")})
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(SettingsError, match="JSON object"):
        default_flags({"SOFTGRPO_SGLANG_CONFIG": str(tmp_path / "list.json")})
    with pytest.raises(SettingsError, match=r"SOFTGRPO_SGLANG_CONFIG\['x'\]"):
        default_flags({"SOFTGRPO_SGLANG_CONFIG": '{"x": {"a": 1}}'})


@pytest.mark.parametrize("flags,match", [
    ({**SOFT, "seed": None}, r"custom_params\['seed'\]"),
    ({**SOFT, "seed": 2**63}, r"\[0, 2\*\*63\)"),
    ({**SOFT, "seed": True}, r"custom_params\['seed'\]"),
    ({**SOFT, "on_retract": "ignore"}, r"on_retract.*\('mark', 'abort'\)"),
    ({**SOFT, "max_topk": 9}, r"max_topk.*1\.\.8"),
    ({**SOFT, "top_k": 20}, r"top_k=20.*-1 \(off\) or 1\.\.8"),
    ({**SOFT, "after_thinking_top_k": -1}, r"after_thinking_top_k=-1.*1\.\.8"),
    ({**SOFT, "noise": "levy"}, r"noise"),
    ({**SOFT, "think_end_ids": [100]}, r"think_end_token_ids"),
    ({**SOFT, "colour": "red"}, r"unknown soft-thinking flag.*colour"),
    ({**SOFT, "think_end_ids": [[1, 2]]}, r"custom_params\['think_end_ids'\].*flat list"),
    ({**SOFT, "add_noise_gumbel_softmax": True, "add_noise_gaussian": True}, r"at most one"),
])
def test_bad_flags_name_the_key(flags, match) -> None:
    with pytest.raises(SettingsError, match=match):
        parse(flags)


@pytest.mark.parametrize("field,value", [("frequency_penalty", 0.5), ("presence_penalty", -1.0),
                                         ("repetition_penalty", 1.2), ("min_new_tokens", 4), ("logit_bias", {"3": 1.0}),
                                         ("regex", "a+"), ("json_schema", "{}")])
def test_soft_requests_refuse_what_the_step_cannot_honour(field, value) -> None:
    with pytest.raises(SettingsError, match=field):
        parse(SOFT, SamplingView(**{field: value}))
    assert parse({"seed": 1}, SamplingView(**{field: value})) is None  # discrete requests are not affected


def test_modes_and_widths() -> None:
    assert plugin_mode({}) == "off" and plugin_mode({"SOFTGRPO_SGLANG": "Require"}) == "require"
    with pytest.raises(SettingsError, match=r"SOFTGRPO_SGLANG='yes'.*\('off', 'on', 'require'\)"):
        plugin_mode({"SOFTGRPO_SGLANG": "yes"})
    assert server_widths({}) == (32, 32) and server_widths({"SOFTGRPO_SGLANG_MAX_TOPK": "5"}) == (5, 5)
    assert server_widths({"SOFTGRPO_SGLANG_MAX_TOPK": "5", "SOFTGRPO_SGLANG_WIDTH": "64"}) == (5, 64)
    with pytest.raises(SettingsError, match="SOFTGRPO_SGLANG_WIDTH"):
        server_widths({"SOFTGRPO_SGLANG_MAX_TOPK": "8", "SOFTGRPO_SGLANG_WIDTH": "4"})
    with pytest.raises(SettingsError, match="SOFTGRPO_SGLANG_MAX_TOPK"):
        server_widths({"SOFTGRPO_SGLANG_MAX_TOPK": "0"})


OK_ARGS = dict(speculative_algorithm=None, enable_mixed_chunk=False, enable_dp_attention=False, pp_size=1,
               disaggregation_mode="null", enable_pdmux=False, enable_two_batch_overlap=False, enable_lora=None,
               lora_paths=None, lora_target_modules=None, tp_size=2, dp_size=2, disable_cuda_graph=False,
               disable_overlap_schedule=False, enable_torch_compile=True, disable_radix_cache=False,
               chunked_prefill_size=8192)


@pytest.mark.parametrize("change,match", [
    ({"speculative_algorithm": "EAGLE"}, "speculative_algorithm='EAGLE'"),
    ({"enable_mixed_chunk": True}, "enable_mixed_chunk"),
    ({"enable_dp_attention": True}, "enable_dp_attention"),
    ({"pp_size": 2}, "pp_size=2"),
    ({"disaggregation_mode": "prefill"}, "disaggregation_mode='prefill'"),
    ({"enable_pdmux": True}, "enable_pdmux"),
    ({"enable_two_batch_overlap": True}, "enable_two_batch_overlap"),
    ({"enable_lora": True, "lora_target_modules": ["q_proj", "embed_tokens"]}, "LoRA on embed_tokens"),
    ({"enable_lora": True, "lora_target_modules": "all"}, "LoRA on embed_tokens"),
    ({"enable_lora": True}, "without lora_target_modules"),
])
def test_refusal_matrix(change, match) -> None:
    assert server_refusals(SimpleNamespace(**OK_ARGS), ["Qwen2ForCausalLM"]) == []  # TP, DP, graphs, compile: allowed
    problems = server_refusals(SimpleNamespace(**{**OK_ARGS, **change}), ["Qwen2ForCausalLM"])
    assert len(problems) == 1 and match in problems[0]


def test_architectures_and_allowed_lora() -> None:
    for arch in ALLOWED_ARCHITECTURES:
        assert server_refusals(SimpleNamespace(**OK_ARGS), [arch]) == []
    assert "architecture 'GemmaForCausalLM'" in server_refusals(SimpleNamespace(**OK_ARGS), ["GemmaForCausalLM"])[0]
    assert "architecture None" in server_refusals(SimpleNamespace(**OK_ARGS), None)[0]
    lora = {**OK_ARGS, "enable_lora": True, "lora_target_modules": ["q_proj", "v_proj"]}
    assert server_refusals(SimpleNamespace(**lora), ["LlamaForCausalLM"]) == []
