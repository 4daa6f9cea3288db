"""Command line: ``python -m eval run ...`` and ``python -m eval compare RUN_A RUN_B``.

Example::

    python -m eval run --model PATH --benchmarks aime2024,gsm8k --data-dir DIR \\
        --output-dir results --run-name my-run --backend hf --preset configs/eval/gumbel.yaml \\
        --num_samples 32 --max_generated_tokens 32768 --seed 0

Precedence of sampling values: command-line flag > ``--preset`` YAML > built-in defaults
(:class:`eval.settings.SamplingSettings`). Every value is checked before anything is written or a
model is loaded; a bad one, a missing model or a corrupt benchmark file prints one ``error:`` line
and exits with status 2.

Grading: the text after ``</think>``, last ``\\boxed{}`` (spec §6). A completion with no
``</think>`` is graded whole by default (``--no-require-think-end``): evaluation runs on any model,
including ones that never write a think-end (instruct models, discrete baselines), and the
original's published evaluation graded the whole completion, so the default keeps numbers
comparable; the share of completions without a think-end is reported per benchmark
(``no_think_end_share``). ``--require-think-end`` scores them 0, as the trainer's reward does.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from eval.backends import BACKENDS, Backend, make_backend
from eval.benchmarks import MAIN_BENCHMARKS, check_benchmark_names, load_benchmark
from eval.prompts import DEFAULT_TEMPLATE, check_template
from eval.settings import SamplingSettings, SettingsError
from soft_thinking.errors import exit_on_error

PRESET_EXTRA_KEYS = ("num_samples", "benchmarks", "prompt_template")
BackendFactory = Callable[[argparse.Namespace, SamplingSettings], Backend]


def _sampling_fields() -> list[Any]:
    return list(fields(SamplingSettings))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="sample, grade and summarize a model on benchmarks")
    run.add_argument("--model", required=True, help="model path or hub id (short names per soft_thinking.engines.hf.models)")
    run.add_argument("--benchmarks", default=None, help=f"comma list (default: {','.join(MAIN_BENCHMARKS)})")
    run.add_argument("--data-dir", default=None, help="directory of <benchmark>.json files (else $SOFTGRPO_BENCHMARK_DIR, else the hub)")
    run.add_argument("--hub-revision", default=None, help="dataset revision (commit) when loading from the hub")
    run.add_argument("--output-dir", default="results")
    run.add_argument("--run-name", default=None, help="default: <model basename>")
    run.add_argument("--backend", default="hf", choices=BACKENDS)
    run.add_argument("--preset", default=None, help="YAML file of sampling flags (configs/eval/*.yaml)")
    run.add_argument("--prompt-template", default=None, help="string with {problem}; default is the paper's prompt")
    run.add_argument("--think-end", default="</think>")
    run.add_argument("--device", default="cpu")
    run.add_argument("--threads", type=int, default=1,
                     help="torch CPU threads (default 1: on small shared machines more threads can be far slower)")
    run.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    run.add_argument("--limit", type=int, default=None, help="first N problems per benchmark")
    run.add_argument("--num_samples", type=int, default=None, help="samples per problem (default 32)")
    run.add_argument("--grade-workers", type=int, default=2)
    run.add_argument("--grade-timeout", type=float, default=10.0, help="seconds per answer")
    run.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for CIs")
    run.add_argument("--require-think-end", action=argparse.BooleanOptionalAction, default=False,
                     help="score 0 for a completion without </think> (default: grade the whole completion)")
    for f in _sampling_fields():
        flag = f"--{f.name}"
        if f.type in ("bool", bool):
            run.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            typ = int if "int" in str(f.type) else float
            run.add_argument(flag, type=typ, default=None)
    cmp_ = sub.add_parser("compare", help="print two runs side by side")
    cmp_.add_argument("run_a")
    cmp_.add_argument("run_b")
    return parser


def load_preset(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise SettingsError(f"--preset {path}: no such file") from exc
    except yaml.YAMLError as exc:
        raise SettingsError(f"--preset {path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"preset {path} must be a mapping of flag: value")
    allowed = {f.name for f in _sampling_fields()} | set(PRESET_EXTRA_KEYS)
    unknown = set(data) - allowed
    if unknown:
        raise SettingsError(f"preset {path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return data


def resolve(args: argparse.Namespace) -> tuple[SamplingSettings, dict[str, Any]]:
    """Merge flags over the preset; return the sampling settings and the other run values."""
    preset = load_preset(args.preset)
    values = {f.name: preset[f.name] for f in _sampling_fields() if f.name in preset}
    values.update({f.name: getattr(args, f.name) for f in _sampling_fields() if getattr(args, f.name) is not None})
    settings = SamplingSettings.from_mapping(values)
    benchmarks = args.benchmarks or preset.get("benchmarks") or ",".join(MAIN_BENCHMARKS)
    if isinstance(benchmarks, str):
        benchmarks = [b.strip() for b in benchmarks.split(",") if b.strip()]
    num_samples = next((v for v in (args.num_samples, preset.get("num_samples")) if v is not None), 32)
    other = {
        "benchmarks": check_benchmark_names(list(benchmarks)),
        "num_samples": num_samples,
        "prompt_template": check_template(args.prompt_template or preset.get("prompt_template") or DEFAULT_TEMPLATE),
    }
    check_run_args(args, num_samples)
    return settings, other


def check_run_args(args: argparse.Namespace, num_samples: Any) -> None:
    """The run's counts and limits (0 is a value, never "use the default")."""
    ints = {"--num_samples": (num_samples, 1), "--n-boot": (args.n_boot, 1), "--threads": (args.threads, 1),
            "--grade-workers": (args.grade_workers, 1)}
    if args.limit is not None:
        ints["--limit"] = (args.limit, 1)
    for flag, (value, low) in ints.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise SettingsError(f"{flag}={value!r} is invalid: allowed an integer >= {low}")
    if not (args.grade_timeout > 0 and args.grade_timeout != float("inf")):
        raise SettingsError(f"--grade-timeout={args.grade_timeout!r} is invalid: allowed a finite number > 0")


def fingerprint(args: argparse.Namespace, settings: SamplingSettings, other: dict[str, Any]) -> dict[str, Any]:
    fp = {"model": args.model, "backend": args.backend, "dtype": args.dtype, "think_end": args.think_end,
          "prompt_template": other["prompt_template"], "sampling": settings.to_dict()}
    if args.require_think_end:  # only when on, so runs made before the flag existed still resume
        fp["require_think_end"] = True
    return fp


def _default_backend(args: argparse.Namespace, settings: SamplingSettings) -> Backend:
    return make_backend(args.backend, args.model, settings, device=args.device, dtype=args.dtype,
                        think_end=args.think_end)


def cmd_run(args: argparse.Namespace, backend_factory: BackendFactory | None = None) -> int:
    from eval.runner import RunSpec, run_eval

    settings, other = resolve(args)
    import torch

    torch.set_num_threads(args.threads)
    problems = {b: load_benchmark(b, args.data_dir, limit=args.limit, hub_revision=args.hub_revision)
                for b in other["benchmarks"]}
    run_name = args.run_name or Path(args.model.rstrip("/")).name
    spec = RunSpec(
        run_dir=Path(args.output_dir) / run_name, fingerprint=fingerprint(args, settings, other),
        num_samples=other["num_samples"], seed=settings.seed, prompt_template=other["prompt_template"],
        grade_workers=args.grade_workers, grade_timeout_s=args.grade_timeout, n_boot=args.n_boot, title=run_name,
        require_think_end=args.require_think_end,
        extra={"limit": args.limit, "device": args.device, "data_dir": args.data_dir},
    )
    from eval.rundir import RunDir

    RunDir(spec.run_dir).init(spec.fingerprint)  # refuse a mismatched resume before loading a model
    backend = (backend_factory or _default_backend)(args, settings)
    summary = run_eval(spec, problems, backend)
    print((spec.run_dir / "summary.md").read_text(encoding="utf-8"))
    avg = summary.get("average", {}).get("grade_status", {})
    if avg.get("timeout") or avg.get("parse_error"):
        print(f"note: {avg.get('timeout', 0)} grading timeouts and {avg.get('parse_error', 0)} parse errors (scored 0)")
    return 0


@exit_on_error
def main(argv: Sequence[str] | None = None, backend_factory: BackendFactory | None = None) -> int:
    """Every user error (a :class:`~soft_thinking.errors.SoftGRPOError`) is one ``error:`` line, exit 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return cmd_run(args, backend_factory)
    from eval.compare import compare_runs

    print(compare_runs(args.run_a, args.run_b))
    return 0
