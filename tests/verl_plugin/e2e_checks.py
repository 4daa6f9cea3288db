"""What every end-to-end ``main_ppo`` test on CPU asserts, whatever the rollout engine (hf_soft, vLLM).

Parity is log-space replay parity: ``max |log pi_trainer - log pi_rollout|`` over soft and over discrete steps,
at every step; steps 2-3 also prove the weight sync (the actor moved: KL to the reference > 0).
"""

from __future__ import annotations

import math

from verl_run import RunResult

PARITY = 1e-5
ENV = {"VERL_PLATFORM": "cpu", "SOFTGRPO_GRADE_WORKERS": "1", "OMP_NUM_THREADS": "1"}
FINITE = ("actor/pg_loss", "actor/kl_loss", "actor/loss", "actor/grad_norm")


def report(name: str, r: RunResult) -> None:
    per_step = [s["data"].get("timing_s/step") for s in r.steps]
    print(f"\n[{name}] rc={r.rc} wall={r.wall_s:.1f}s peak_pss={r.peak_bytes / 2**30:.2f}GiB s/step={per_step}")
    for s in r.steps:
        d = s["data"]
        print(f"  step {s['step']}: " + ", ".join(f"{k}={d[k]:.3g}" for k in sorted(d) if k.startswith("softgrpo/")))


def check_run(r: RunResult, steps: int) -> list[dict]:
    """Exit 0, one metrics record per step, peak memory under 8 GiB; the per-step metrics."""
    assert r.rc == 0, r.tail()
    assert [s["step"] for s in r.steps] == list(range(1, steps + 1)), r.tail()
    assert r.peak_bytes < 8 * 2**30, r.peak_bytes
    return [s["data"] for s in r.steps]


def check_soft_arm(data: list[dict]) -> None:
    for d in data:
        assert d["softgrpo/replay_max_abs_dlogp_soft"] <= PARITY, d
        assert d["softgrpo/replay_max_abs_dlogp_discrete"] <= PARITY, d
        assert d["softgrpo/soft_step_share"] > 0 and d["softgrpo/soft_steps"] > 0, d
        assert d["training/rollout_probs_diff_max"] <= PARITY, d
        for key in FINITE:
            assert math.isfinite(d[key]), (key, d[key])
    assert data[-1]["actor/kl_loss"] > 0  # the actor moved away from the reference...
    assert data[-1]["actor/grad_norm"] > 0  # ...so parity at steps 2-3 shows the weight sync works


def check_discrete_arm(data: list[dict]) -> None:
    for d in data:
        assert d["softgrpo/soft_steps"] == 0 and d["softgrpo/soft_step_share"] == 0, d
        assert d["softgrpo/discrete_steps"] > 0, d
        assert d["softgrpo/replay_max_abs_dlogp_discrete"] <= PARITY, d
        assert math.isfinite(d["actor/kl_loss"]) and math.isfinite(d["actor/pg_loss"]), d


def check_plain_engine_control(r: RunResult) -> None:
    """Negative control: verl's plain engine scores the soft steps as tokens, so the parity breaks."""
    (d,) = check_run(r, 1)
    assert "VERL_ENGINE_VENDOR='none'" in r.log  # the trainer said why
    assert d["softgrpo/soft_steps"] > 0
    assert d["softgrpo/replay_max_abs_dlogp_soft"] > 0.1, d
