"""verl-format parquets of the paper's data (spec §5): DeepScaleR for training; AIME24, AMC and
MATH-500 for validation::

    python -m softgrpo.verl_plugin.data_prep --out data/verl [--local DIR] [--revision NAME=REV ...]

Each row is verl's RL layout: ``data_source``, ``prompt`` (one user message: the problem +
:data:`SUFFIX`; verl applies the chat template), ``ability``, ``reward_model.ground_truth``,
``extra_info.{split,index}``. Output: ``<out>/<name>/{train,test}.parquet`` and ``<out>/SOURCES.json``
(dataset, requested revision, resolved commit, rows) -- pass the resolved commits back with
``--revision`` to rebuild the same files.

``--local DIR`` reads ``DIR/<file>`` instead of the hub: a verl parquet (``aime.parquet``,
``amc.parquet``, ``math.parquet`` as shipped with the original's validation data) or a
``.parquet``/``.json``/``.jsonl`` of records with ``problem``/``answer`` fields.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from soft_thinking.errors import SoftGRPOError, exit_on_error

SUFFIX = " Let's think step by step and output the final answer within \\boxed{}."


@dataclass(frozen=True)
class Source:
    name: str  # output folder
    data_source: str  # verl's data_source (selects the gold format in softgrpo.rewards)
    split: str  # "train" or "test" (output file name)
    dataset: str
    hub_split: str
    local_files: tuple[str, ...]
    revision: str = "main"


SOURCES: tuple[Source, ...] = (
    Source("deepscaler", "deepscaler", "train", "agentica-org/DeepScaleR-Preview-Dataset", "train",
           ("deepscaler.parquet", "deepscaler.jsonl", "deepscaler.json")),
    Source("aime24", "aime", "test", "HuggingFaceH4/aime_2024", "train", ("aime.parquet", "aime24.parquet")),
    Source("amc", "amc", "test", "AI-MO/aimo-validation-amc", "train", ("amc.parquet",)),
    Source("math500", "math", "test", "HuggingFaceH4/MATH-500", "test", ("math.parquet", "math500.parquet")),
)


class DataPrepError(SoftGRPOError):
    """A source cannot be read; the message names it and how to get it."""


def verl_row(data_source: str, problem: str, answer: Any, split: str, index: int) -> dict[str, Any]:
    return {
        "data_source": data_source,
        "prompt": [{"role": "user", "content": str(problem).strip() + SUFFIX}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": str(answer).strip()},
        "extra_info": {"split": split, "index": index},
    }


def _records_to_rows(src: Source, records: list[dict[str, Any]], origin: str) -> list[dict[str, Any]]:
    rows = []
    for i, r in enumerate(records):
        problem = r.get("problem", r.get("question"))
        answer = r.get("answer", r.get("final_answer"))
        if problem is None or answer is None:
            raise DataPrepError(f"{origin} record {i} has no problem/answer fields (keys: {sorted(r)})")
        rows.append(verl_row(src.data_source, problem, answer, src.split, i))
    return rows


def load_local(src: Source, folder: Path) -> tuple[list[dict[str, Any]], str]:
    for fname in src.local_files:
        path = folder / fname
        if not path.is_file():
            continue
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
            if {"prompt", "reward_model"} <= set(df.columns):  # already verl's layout: keep the prompts
                df = df.assign(data_source=src.data_source)
                return df.to_dict("records"), str(path)
            return _records_to_rows(src, df.to_dict("records"), str(path)), str(path)
        text = path.read_text()
        records = [json.loads(x) for x in text.splitlines() if x.strip()] if path.suffix == ".jsonl" else json.loads(text)
        return _records_to_rows(src, records, str(path)), str(path)
    raise DataPrepError(f"{src.name}: none of {list(src.local_files)} in {folder}")


def load_hub(src: Source, revision: str) -> tuple[list[dict[str, Any]], str]:
    try:
        import datasets
        from huggingface_hub import HfApi

        sha = HfApi().dataset_info(src.dataset, revision=revision).sha
        ds = datasets.load_dataset(src.dataset, split=src.hub_split, revision=sha)
    except Exception as err:  # offline, unknown revision, gated dataset: one clear message
        raise DataPrepError(
            f"{src.name}: cannot load {src.dataset}@{revision} from the Hugging Face hub ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); offline, pass --local DIR with {list(src.local_files)}"
        ) from None
    return _records_to_rows(src, [dict(r) for r in ds], f"{src.dataset}@{sha}"), sha


def prepare(out: Path, local: Path | None = None, revisions: dict[str, str] | None = None,
            only: tuple[str, ...] | None = None) -> dict[str, Any]:
    revisions = revisions or {}
    manifest: dict[str, Any] = {}
    for src in SOURCES:
        if only and src.name not in only:
            continue
        if local is not None:
            rows, origin = load_local(src, local)
            resolved = None
        else:
            rows, resolved = load_hub(src, revisions.get(src.name, src.revision))
            origin = src.dataset
        if not rows:
            raise DataPrepError(f"{src.name}: {origin} has no rows")
        (out / src.name).mkdir(parents=True, exist_ok=True)
        target = out / src.name / f"{src.split}.parquet"
        pd.DataFrame(rows).to_parquet(target)
        manifest[src.name] = {"origin": origin, "requested_revision": revisions.get(src.name, src.revision),
                              "resolved_revision": resolved, "rows": len(rows), "file": str(target)}
    (out / "SOURCES.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _revision(text: str) -> tuple[str, str]:
    name, sep, rev = text.partition("=")
    names = [s.name for s in SOURCES]
    if not sep or name not in names or not rev:
        raise argparse.ArgumentTypeError(f"--revision {text!r}: allowed NAME=REV with NAME in {names}")
    return name, rev


@exit_on_error
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--local", type=Path, default=None, help="read the sources from this folder, not the hub")
    p.add_argument("--revision", type=_revision, action="append", default=[], help="NAME=REV (commit) per source")
    p.add_argument("--only", nargs="+", choices=[s.name for s in SOURCES], default=None)
    args = p.parse_args(argv)
    manifest = prepare(args.out, args.local, dict(args.revision), tuple(args.only) if args.only else None)
    for name, m in manifest.items():
        print(f"{name}: {m['rows']} rows from {m['origin']} -> {m['file']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
