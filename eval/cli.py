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
from eval.benchmarks import ALL_BENCHMARKS, MAIN_BENCHMARKS, load_benchmark
from eval.options import RunOptions, check_run_inputs
from eval.prompts import DEFAULT_TEMPLATE, check_template
from eval.settings import SamplingSettings, SettingsError, check_type
from soft_thinking.argparser import ArgumentParser
from soft_thinking.errors import exit_on_error

PRESET_EXTRA_KEYS = ("num_samples", "benchmarks", "prompt_template")
BackendFactory = Callable[[argparse.Namespace, SamplingSettings], Backend]


def _sampling_fields() -> list[Any]:
    return list(fields(SamplingSettings))


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m eval", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="sample, grade and summarize a model on benchmarks")
    run.add_argument("--model", required=True, help="model path or hub id (short names per soft_thinking.engines.hf.models)")
    run.add_argument("--benchmarks", default=None, help=f"comma list (default: {','.join(MAIN_BENCHMARKS)})")
    run.add_argument("--data-dir", default=None, help="directory of <benchmark>.json files (else $SOFTGRPO_BENCHMARK_DIR, else the hub)")
    run.add_argument("--hub-revision", default=None, help="dataset revision (commit) when loading from the hub")
    run.add_argument("--output-dir", default="results")
    run.add_argument("--run-name", default=None, help="a folder name inside --output-dir (default: <model basename>)")
    run.add_argument("--backend", default="hf", choices=BACKENDS)
    run.add_argument("--preset", default=None, help="YAML file of sampling flags (configs/eval/*.yaml)")
    run.add_argument("--prompt-template", default=None, help="string with {problem}; default is the paper's prompt")
    run.add_argument("--think-end", default="</think>")
    run.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps, as this torch supports")
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
    run.add_argument("--trust-remote-code", action="store_true",
                     help="allow the checkpoint's own modelling code (off unless given)")
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
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise SettingsError(f"--preset {path}: no such file") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SettingsError(f"--preset {path}: not valid YAML ({' '.join(str(exc).split())})") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"preset {path} must be a mapping of flag: value")
    allowed = {f.name for f in _sampling_fields()} | set(PRESET_EXTRA_KEYS)
    unknown = set(data) - allowed
    if unknown:
        raise SettingsError(f"preset {path}: unknown key(s) {sorted(map(str, unknown))}; allowed: {sorted(allowed)}")
    # every value of the file is checked, also one a flag overrides: a bad preset is never half used
    for f in _sampling_fields():
        if f.name in data:
            check_type(f"--{f.name}", data[f.name], str(f.type))
    if "num_samples" in data:
        check_type("--num_samples", data["num_samples"], "int")
        if data["num_samples"] < 1:
            raise SettingsError(f"preset {path}: num_samples={data['num_samples']!r} is invalid: allowed an integer >= 1")
    if "benchmarks" in data:
        _benchmark_list(data["benchmarks"])
    if "prompt_template" in data:
        check_template(data["prompt_template"])
    return data


def _benchmark_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(b.strip() for b in value.split(",") if b.strip())
    if isinstance(value, list) and all(isinstance(b, str) for b in value):
        return tuple(value)
    raise SettingsError(f"benchmarks={value!r} is invalid: allowed a comma list of {list(ALL_BENCHMARKS)}")


def resolve(args: argparse.Namespace) -> tuple[SamplingSettings, RunOptions]:
    """Merge flags over the preset; return the validated sampling settings and run options (no I/O
    besides reading the preset and checking that given paths exist)."""
    preset = load_preset(args.preset)
    values = {f.name: preset[f.name] for f in _sampling_fields() if f.name in preset}
    values.update({f.name: getattr(args, f.name) for f in _sampling_fields() if getattr(args, f.name) is not None})
    settings = SamplingSettings.from_mapping(values)
    num_samples = next((v for v in (args.num_samples, preset.get("num_samples")) if v is not None), 32)
    opts = RunOptions(
        model=args.model, benchmarks=_benchmark_list(args.benchmarks or preset.get("benchmarks") or list(MAIN_BENCHMARKS)),
        output_dir=args.output_dir, run_name=args.run_name, data_dir=args.data_dir, hub_revision=args.hub_revision,
        backend=args.backend, prompt_template=next((v for v in (args.prompt_template, preset.get("prompt_template"))
                                                    if v is not None), DEFAULT_TEMPLATE),
        think_end=args.think_end, device=args.device, threads=args.threads, dtype=args.dtype, limit=args.limit,
        num_samples=num_samples, grade_workers=args.grade_workers, grade_timeout=args.grade_timeout,
        n_boot=args.n_boot, require_think_end=args.require_think_end, trust_remote_code=args.trust_remote_code,
    )
    return settings, opts.validate(BACKENDS)


def fingerprint(opts: RunOptions, settings: SamplingSettings) -> dict[str, Any]:
    fp = {"model": opts.model, "backend": opts.backend, "dtype": opts.dtype, "think_end": opts.think_end,
          "prompt_template": opts.prompt_template, "sampling": settings.to_dict()}
    if opts.require_think_end:  # only when on, so runs made before the flag existed still resume
        fp["require_think_end"] = True
    if opts.trust_remote_code:
        fp["trust_remote_code"] = True
    return fp


def _default_backend(args: argparse.Namespace, settings: SamplingSettings) -> Backend:
    kwargs: dict[str, Any] = {"device": args.device, "dtype": args.dtype, "think_end": args.think_end}
    if args.trust_remote_code:
        kwargs["trust_remote_code"] = True
    return make_backend(args.backend, args.model, settings, **kwargs)


def cmd_run(args: argparse.Namespace, backend_factory: BackendFactory | None = None) -> int:
    """Check everything (values, data, model, an existing run's files) without writing; then take the
    run lock, load the model and run. A failed start removes the run folder it created."""
    from eval.rundir import RunDir, claim_run_dir
    from eval.runner import RunSpec, run_eval

    settings, opts = resolve(args)
    problems = {b: load_benchmark(b, opts.data_dir, limit=opts.limit, hub_revision=opts.hub_revision)
                for b in opts.benchmarks}
    if backend_factory is None:  # an injected backend brings its own model
        check_run_inputs(opts)
    spec = RunSpec(
        run_dir=opts.run_dir, fingerprint=fingerprint(opts, settings),
        num_samples=opts.num_samples, seed=settings.seed, prompt_template=opts.prompt_template,
        grade_workers=opts.grade_workers, grade_timeout_s=opts.grade_timeout, n_boot=opts.n_boot, title=opts.name,
        require_think_end=opts.require_think_end,
        extra={"limit": opts.limit, "device": opts.device, "data_dir": opts.data_dir},
    )
    RunDir(spec.run_dir).check(spec.fingerprint)  # refuse a mismatched or damaged run before anything else
    import torch

    torch.set_num_threads(opts.threads)
    with claim_run_dir(spec.run_dir):
        RunDir(spec.run_dir).check(spec.fingerprint, samples=False)  # again under the lock (run_eval reads samples)
        backend = (backend_factory or _default_backend)(args, settings)
        summary = run_eval(spec, problems, backend)
    print((spec.run_dir / "summary.md").read_text(encoding="utf-8"))
    avg = summary.get("average", {}).get("grade_status", {})
    failed = {st: avg.get(st, 0) for st in ("timeout", "parse_error", "error") if avg.get(st)}
    if failed:
        print("note: grading failures (scored 0): " + ", ".join(f"{n} {st}" for st, n in failed.items()))
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
