"""The log-space replay metric and the soft_thinking section: numbers, and the errors' key names."""

from __future__ import annotations

import pytest
import torch

from softgrpo.verl_plugin.metrics import replay_parity_metrics
from softgrpo.verl_plugin.settings import (
    SoftSettingsError,
    logprob_options,
    logprob_options_from_dict,
    max_topk,
    soft_config,
    soft_section,
    validate_section,
)


def _nested(rows):
    return torch.nested.as_nested_tensor([torch.tensor(r) for r in rows], layout=torch.jagged)


def test_replay_parity_metrics_split_by_step_kind():
    old = _nested([[-1.0, -2.0, -3.0], [-0.5, -0.25]])
    roll = _nested([[-1.0, -2.5, -3.0], [-0.5, -0.3]])
    mask = _nested([[1, 1, 1], [1, 0]])
    # prompts of 2 and 1 tokens; step 1 of sequence 0 is soft, the masked step of sequence 1 too
    on = _nested([[0, 0, 0, 1, 0], [0, 0, 1]])
    m = replay_parity_metrics(old, roll, mask, on)
    assert m["softgrpo/replay_max_abs_dlogp_soft"] == pytest.approx(0.5)
    assert m["softgrpo/replay_max_abs_dlogp_discrete"] == 0.0  # the 0.05 gap is masked out
    assert m["softgrpo/soft_steps"] == 1 and m["softgrpo/discrete_steps"] == 3
    assert m["softgrpo/soft_step_share"] == pytest.approx(0.25)
    # negative control: without soft_on every gap counts as discrete
    assert replay_parity_metrics(old, roll, mask, None)["softgrpo/replay_max_abs_dlogp_discrete"] == pytest.approx(0.5)


def test_section_rules():
    assert soft_section(None) == {}
    with pytest.raises(SoftSettingsError, match=r"custom.soft_thinking.temperature is not allowed"):
        soft_section({"soft_thinking": {"temperature": 0.7}})
    with pytest.raises(SoftSettingsError, match="max_topk=0"):
        max_topk({"max_topk": 0})
    with pytest.raises(SoftSettingsError, match="noise"):
        validate_section({"noise": "laplace"}, 1.0, 0.95, 5)
    with pytest.raises(SoftSettingsError, match="noise_factor"):
        validate_section({"noise_factor": 2.0}, 1.0, 0.95, 5)
    cfg = soft_config({"max_topk": 3, "gumbel_softmax_temperature": 0.25}, 0.6, 0.9, 0, think_end_token_ids=(5,))
    assert (cfg.temperature, cfg.top_p, cfg.top_k, cfg.max_topk, cfg.think_end_token_ids) == (0.6, 0.9, -1, 3, (5,))
    opts = logprob_options(cfg)
    assert opts["gumbel_clamp"] == [-1.5, 3.0] and opts["mode"] == "paper"
    assert logprob_options_from_dict(opts).gumbel_clamp == (-1.5, 3.0)
