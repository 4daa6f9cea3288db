"""scripts/prepare_data.sh's converter: verl parquets from local files; one clear error offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
from benchmark_data import require_benchmarks

from softgrpo.verl_plugin.data_prep import SUFFIX, prepare


def test_local_sources_become_verl_parquets(tmp_path):
    bench = require_benchmarks("aime.parquet", "amc.parquet", "math.parquet")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("aime.parquet", "amc.parquet", "math.parquet"):
        shutil.copy(bench / name, src / name)
    (src / "deepscaler.jsonl").write_text(json.dumps({"problem": "What is $1+1$?", "answer": "2"}) + "\n"
                                         + json.dumps({"problem": "3*3?", "answer": "9", "solution": "..."}) + "\n")
    manifest = prepare(tmp_path / "out", local=src)
    assert {k: v["rows"] for k, v in manifest.items()} == {"deepscaler": 2, "aime24": 30, "amc": 83, "math500": 500}
    train = pd.read_parquet(tmp_path / "out" / "deepscaler" / "train.parquet")
    row = train.iloc[0]
    assert row["data_source"] == "deepscaler" and row["reward_model"]["ground_truth"] == "2"
    assert list(row["prompt"]) == [{"role": "user", "content": "What is $1+1$?" + SUFFIX}]
    aime = pd.read_parquet(tmp_path / "out" / "aime24" / "test.parquet")
    assert set(aime["data_source"]) == {"aime"} and aime.iloc[0]["reward_model"]["ground_truth"] == "204"


def test_offline_hub_is_one_error_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "softgrpo.verl_plugin.data_prep", "--out", str(tmp_path), "--only", "amc"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: amc: cannot load AI-MO/aimo-validation-amc@main")
    assert "--local DIR" in out.stderr
