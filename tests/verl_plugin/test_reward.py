"""The run's reward as verl loads and calls it: ``reward.custom_reward_function.path=pkg://softgrpo.rewards``
through verl's ``get_custom_reward_fn``, called from executor threads as ``NaiveRewardManager`` does.
Each case runs in a fresh process (the grading pool and its timeout are per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json
from concurrent.futures import ThreadPoolExecutor
from omegaconf import OmegaConf
from verl.trainer.ppo.reward import get_custom_reward_fn
cfg = OmegaConf.create({"reward": {"custom_reward_function": {
    "path": "pkg://softgrpo.rewards", "name": "compute_score", "reward_kwargs": {}}}})
fn = get_custom_reward_fn(cfg)
slow = "+".join(f"(x^{{{i}}}-{i})^{{{i % 7 + 2}}}" for i in range(110))  # 1,759 chars (< the 2,000-char box limit); sympy needs >10 s
answers = ["<think>3 and 4</think> The sum is \\boxed{7}.", "<think>hm</think> \\boxed{8}",
           "no think end \\boxed{7}", "<think>x</think> \\boxed{\\frac{14}{2}}",
           "<think>y</think> \\boxed{" + slow + "}"]
with ThreadPoolExecutor(2) as ex:
    scores = list(ex.map(lambda a: fn(data_source="arithmetic", solution_str=a, ground_truth="7"), answers))
from softgrpo import rewards
print("RESULT " + json.dumps({"scores": scores, "counts": dict(rewards.STATUS_COUNTS)}))
"""


def test_reward_on_real_answers_with_a_timeout_in_worker_threads():
    env = {**os.environ, "SOFTGRPO_GRADE_WORKERS": "1", "SOFTGRPO_GRADE_TIMEOUT": "2"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))[len("RESULT "):])
    assert r["scores"] == [1.0, 0.0, 0.0, 1.0, 0.0]
    # the pathological answer hit the 2 s limit from an executor thread (no signal involved): 0 and counted
    assert r["counts"] == {"ok": 3, "no_think_end": 1, "timeout": 1}
