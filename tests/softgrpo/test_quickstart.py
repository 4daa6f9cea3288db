"""The embedded default end to end on a tiny budget: every output file exists and parses."""

import json
from pathlib import Path

from softgrpo.quickstart import ARMS, MODES, main


def test_fast_quickstart_writes_every_output(tmp_path: Path) -> None:
    out = tmp_path / "qs"
    assert main(["--fast", "--out", str(out), "trainer.progress=false"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["eval"]) == {"start", *ARMS}
    for res in summary["eval"].values():
        for mode in MODES:
            p = [res[mode][f"pass@{k}"]["mean"] for k in (1, 2, 4)]
            assert all(0.0 <= x <= 1.0 for x in p) and p == sorted(p)  # Pass@k is non-decreasing in k
            lo, hi = res[mode]["pass@1"]["ci95"]
            assert lo <= res[mode]["pass@1"]["mean"] <= hi
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert {ln["arm"] for ln in lines} == set(ARMS) and all("replay/max_abs_diff" in ln for ln in lines)
    report = (out / "report.md").read_text()
    assert "| checkpoint | inference |" in report and "Pass@4" in report
    for png in ("training_curves.png", "passk.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for arm in ARMS:
        assert (out / "seed0" / arm / "checkpoints" / "global_step_2" / "model" / "model.safetensors").is_file()
    assert (out / "seed0" / "start" / "config.json").is_file()
