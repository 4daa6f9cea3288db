"""Every invalid SoftThinkingConfig field produces an error that names it."""

import json

import pytest

from soft_thinking.core.config import ConfigError, SoftThinkingConfig

BASE = dict(think_end_token_ids=(7,))

BAD_VALUES = [
    ("max_topk", 0),
    ("max_topk", 2.5),
    ("temperature", -0.1),
    ("temperature", float("nan")),
    ("top_p", 0.0),
    ("top_p", 1.5),
    ("top_k", 0),
    ("top_k", -2),
    ("min_p", 1.0),
    ("min_p", -0.1),
    ("after_thinking_temperature", -1.0),
    ("after_thinking_top_p", 0.0),
    ("after_thinking_top_k", 0),
    ("after_thinking_min_p", 1.2),
    ("noise", "uniform"),
    ("gumbel_softmax_temperature", 0.0),
    ("gumbel_softmax_temperature", -1.0),
    ("noise_factor", 0.0),
    ("gumbel_clamp", (3.0, -1.5)),
    ("gumbel_clamp", (1.0,)),
    ("dirichlet_alpha", 0.0),
    ("gaussian_sigma", 0.0),
    ("gaussian_clip", -1.0),
    ("think_end_token_ids", (-1,)),
    ("early_stopping_entropy_threshold", -0.5),
    ("early_stopping_length_threshold", 0),
    ("logprob_mode", "sum"),
    ("logp_floor", float("inf")),
]


@pytest.mark.parametrize("name,value", BAD_VALUES)
def test_each_bad_value_is_rejected_with_its_field_name(name: str, value: object) -> None:
    cfg = SoftThinkingConfig(**{**BASE, name: value})
    with pytest.raises(ConfigError, match=rf"SoftThinkingConfig\.{name}="):
        cfg.validate()


def test_defaults_are_valid_and_match_the_paper() -> None:
    cfg = SoftThinkingConfig(**BASE).validate(for_training=True)
    assert (cfg.max_topk, cfg.top_k, cfg.top_p, cfg.gumbel_softmax_temperature) == (5, 5, 0.95, 0.1)
    assert cfg.gumbel_clamp == (-1.5, 3.0) and cfg.noise == "gumbel"


def test_soft_thinking_needs_think_end_or_explicit_soft_until_eos() -> None:
    with pytest.raises(ConfigError, match="think_end_token_ids"):
        SoftThinkingConfig().validate()
    SoftThinkingConfig(soft_until_eos=True).validate()
    SoftThinkingConfig(enable_soft_thinking=False).validate()
    with pytest.raises(ConfigError, match="soft_until_eos"):
        SoftThinkingConfig(think_end_token_ids=(3,), soft_until_eos=True).validate()


def test_vocab_bounds() -> None:
    with pytest.raises(ConfigError, match="max_topk"):
        SoftThinkingConfig(**BASE, max_topk=40).validate(vocab_size=32)
    with pytest.raises(ConfigError, match="think_end_token_ids"):
        SoftThinkingConfig(think_end_token_ids=(40,)).validate(vocab_size=32)


@pytest.mark.parametrize(
    "name,value", [("noise_factor", 2.0), ("temperature", 0.0), ("noise", "none")]
)
def test_training_constraints(name: str, value: object) -> None:
    cfg = SoftThinkingConfig(**{**BASE, name: value})
    cfg.validate()  # fine for inference
    with pytest.raises(ConfigError, match=name):
        cfg.validate(for_training=True)


def test_cold_stop_needs_a_think_end() -> None:
    with pytest.raises(ConfigError, match="early_stopping_entropy_threshold"):
        SoftThinkingConfig(soft_until_eos=True, early_stopping_entropy_threshold=0.5).validate()


def test_dict_round_trip_and_unknown_keys() -> None:
    cfg = SoftThinkingConfig(think_end_token_ids=(4, 5), after_thinking_top_k=1, gumbel_clamp=None)
    assert SoftThinkingConfig.from_flags(cfg.to_dict()) == cfg
    assert SoftThinkingConfig.from_flags(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="tau"):
        SoftThinkingConfig.from_flags({"tau": 0.1})
    with pytest.raises(ConfigError, match="unknown"):
        cfg.replace(tau=3)
    assert cfg.answer_top_k == 1 and cfg.answer_top_p == cfg.top_p
    assert SoftThinkingConfig(**BASE, temperature=0.0).effective_noise == "none"


def test_errors_share_the_softgrpo_base() -> None:
    from soft_thinking.engines.hf.engine import EngineError
    from soft_thinking.engines.hf.models import ModelLoadError
    from soft_thinking.errors import SoftGRPOError

    for err, compat in ((ConfigError, ValueError), (EngineError, ValueError), (ModelLoadError, RuntimeError)):
        assert issubclass(err, SoftGRPOError) and issubclass(err, compat)


def test_from_flags_aliases_switches_and_unset_values() -> None:
    aliases = {"tau": "gumbel_softmax_temperature", "cold_stop_length": "early_stopping_length_threshold"}
    cfg = SoftThinkingConfig.from_flags(
        {"tau": 0.5, "cold_stop_length": 9, "max_topk": None, "after_thinking_top_p": None, "top_k": 30},
        aliases=aliases,
    )
    assert (cfg.gumbel_softmax_temperature, cfg.early_stopping_length_threshold, cfg.top_k) == (0.5, 9, 30)
    assert cfg.max_topk == SoftThinkingConfig.default("max_topk")  # None = not given
    assert cfg.after_thinking_top_p is None
    # None is a value for a field that may be None
    assert SoftThinkingConfig.from_flags({"gumbel_clamp": None}).gumbel_clamp is None
    # the original's --add_noise_* switches select the noise; all off = plain Soft Thinking
    assert SoftThinkingConfig.from_flags({"add_noise_dirichlet": True}).noise == "dirichlet"
    assert SoftThinkingConfig.from_flags({"add_noise_gumbel_softmax": False}).noise == "none"
    assert SoftThinkingConfig.from_flags({}).noise == "gumbel"
    with pytest.raises(ConfigError, match="at most one of"):
        SoftThinkingConfig.from_flags({"add_noise_dirichlet": True, "add_noise_gaussian": True})
    with pytest.raises(ConfigError, match="given twice"):
        SoftThinkingConfig.from_flags({"add_noise_dirichlet": True, "noise": "gumbel"})
    with pytest.raises(ConfigError, match="given twice"):
        SoftThinkingConfig.from_flags({"tau": 0.5, "gumbel_softmax_temperature": 0.1}, aliases=aliases)
    with pytest.raises(ConfigError, match=r"unknown soft-thinking flag\(s\) \['temprature'\].*allowed"):
        SoftThinkingConfig.from_flags({"temprature": 1.0})
    with pytest.raises(ConfigError, match="names no SoftThinkingConfig field"):
        SoftThinkingConfig.from_flags({}, aliases={"t": "temp"})


def test_every_field_is_documented_once() -> None:
    from dataclasses import fields

    from soft_thinking.core.config import field_docs

    docs = field_docs()
    assert set(docs) == {f.name for f in fields(SoftThinkingConfig)}
    assert all(len(d) > 10 for d in docs.values())
    assert SoftThinkingConfig.help("top_k").endswith("(default: 5)")


WRONG_TYPES = [
    ("enable_soft_thinking", "false", "true or false"),  # a string "false" would read as True
    ("soft_until_eos", 1, "true or false"),
    ("degenerate_as_discrete", "no", "true or false"),
    ("max_topk", "5", "an integer"),
    ("top_k", True, "an integer"),
    ("temperature", "0.7", "a number"),
    ("noise", 3, "a string"),
    ("gumbel_clamp", ["a", "b"], r"\(low, high\), two finite numbers"),
    ("gumbel_clamp", 5, r"\(low, high\), two finite numbers"),
    ("think_end_token_ids", [7, "x"], "a list of integer token ids"),
    ("after_thinking_top_p", "1", "a number or None"),
]


@pytest.mark.parametrize(("name", "value", "allowed"), WRONG_TYPES, ids=[f"{n}={v!r}" for n, v, _ in WRONG_TYPES])
def test_wrong_types_from_flags_are_named_not_coerced_or_crashing(name: str, value: object, allowed: str) -> None:
    """from_flags never raises a raw ValueError/TypeError, and validate() names the field and its type."""
    cfg = SoftThinkingConfig.from_flags({**BASE, name: value})
    with pytest.raises(ConfigError, match=rf"SoftThinkingConfig\.{name}=.* is invalid: allowed {allowed}"):
        cfg.validate()


def test_noise_switches_take_booleans_only() -> None:
    with pytest.raises(ConfigError, match="add_noise_gumbel_softmax='false' is invalid: allowed true or false"):
        SoftThinkingConfig.from_flags({"add_noise_gumbel_softmax": "false"})
    # control: real booleans and None (argparse's unset) still work
    assert SoftThinkingConfig.from_flags({"add_noise_gumbel_softmax": False}).noise == "none"
    assert SoftThinkingConfig.from_flags({"add_noise_gumbel_softmax": None}).noise == "none"
    assert SoftThinkingConfig.from_flags({**BASE, "gumbel_clamp": [-1, 2]}).validate().gumbel_clamp == (-1.0, 2.0)
