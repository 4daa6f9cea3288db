"""Released SofT-GRPO / GRPO checkpoints: list, download (resumable, pinned), verify, locate.

``python -m eval.checkpoints list --repo zz1358m/SofT-GRPO-master [--revision REV]``
``python -m eval.checkpoints download --local-dir DIR [--revision REV] [--include PATTERN ...]``
``python -m eval.checkpoints locate --local-dir DIR``

``locate`` (and the end of ``download``) lists only usable model folders: the config loads, the
weights exist and their headers are intact; every other folder with a ``config.json`` is reported
on stderr as ``skipped <folder>: <reason>``.

``download`` calls ``huggingface_hub.snapshot_download`` (it skips complete files and resumes
partial ones), then checks every arrived file against the repo's metadata at that revision:
the size always, and the sha256 where the hub reports LFS info. Finally it prints one
``MODEL=<path>`` line per model directory (a folder with a ``config.json``), the form the
sampling scripts take.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from soft_thinking.argparser import ArgumentParser
from soft_thinking.errors import SoftGRPOError, exit_on_error

DEFAULT_REPO = "zz1358m/SofT-GRPO-master"


class CheckpointError(SoftGRPOError, RuntimeError):
    """Hub unreachable, offline, or a downloaded file failed verification."""


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int | None
    sha256: str | None  # LFS files only


def _offline_error(repo: str, exc: BaseException | None) -> CheckpointError:
    why = f" ({type(exc).__name__}: {exc})" if exc else ""
    return CheckpointError(
        f"cannot reach the Hugging Face hub for {repo}{why}. You are offline or HF_HUB_OFFLINE=1 is set. "
        "Download the checkpoints on a machine with internet (python -m eval.checkpoints download "
        f"--repo {repo} --local-dir DIR), copy DIR here, then run `python -m eval.checkpoints locate "
        "--local-dir DIR` and pass the printed MODEL=... to the sampling scripts."
    )


def _hub_errors() -> tuple[type[BaseException], ...]:
    import httpx
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    return (OfflineModeIsEnabled, LocalEntryNotFoundError, httpx.ConnectError, httpx.TimeoutException)


def _check_online(repo: str) -> None:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise _offline_error(repo, None)


def list_remote(repo: str = DEFAULT_REPO, revision: str | None = None) -> list[RemoteFile]:
    """Files of ``repo`` at ``revision`` with size and (for LFS files) sha256."""
    _check_online(repo)
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(repo, revision=revision, files_metadata=True)
    except _hub_errors() as exc:
        raise _offline_error(repo, exc) from exc
    out = []
    for s in info.siblings or []:
        lfs = getattr(s, "lfs", None)
        sha = getattr(lfs, "sha256", None) if lfs is not None else None
        out.append(RemoteFile(s.rfilename, s.size, sha))
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_files(local_dir: Path, remote: Sequence[RemoteFile], include: Sequence[str] | None = None) -> list[str]:
    """Problems found (empty = all good): missing files, size or sha256 mismatches."""
    problems = []
    for f in remote:
        if include and not any(fnmatch.fnmatch(f.path, pat) for pat in include):
            continue
        p = local_dir / f.path
        if not p.is_file():
            problems.append(f"{f.path}: missing")
        elif f.size is not None and p.stat().st_size != f.size:
            problems.append(f"{f.path}: size {p.stat().st_size} != {f.size}")
        elif f.sha256 and _sha256(p) != f.sha256:
            problems.append(f"{f.path}: sha256 mismatch")
    return problems


def locate_models(local_dir: Path | str) -> tuple[list[Path], list[tuple[Path, str]]]:
    """``(usable, skipped)``: folders under ``local_dir`` (itself included) with a ``config.json``,
    split by :func:`soft_thinking.engines.hf.models.check_model_folder` (the config loads, the
    weights exist and their headers are intact); ``skipped`` pairs a folder with the reason."""
    from soft_thinking.engines.hf.model_checks import ModelLoadError, check_model_folder

    root = Path(local_dir)
    if not root.is_dir():
        raise CheckpointError(f"--local-dir {root} does not exist")
    usable, skipped = [], []
    for folder in sorted(p.parent.resolve() for p in root.rglob("config.json") if ".cache" not in p.parts):
        try:
            check_model_folder(folder)
        except ModelLoadError as exc:
            skipped.append((folder, str(exc)))
        else:
            usable.append(folder)
    return usable, skipped


def find_model_dirs(local_dir: Path | str) -> list[Path]:
    """The usable model folders of :func:`locate_models`, sorted."""
    return locate_models(local_dir)[0]


def download(
    local_dir: Path | str, repo: str = DEFAULT_REPO, revision: str | None = None, include: Sequence[str] | None = None
) -> list[Path]:
    """Download (resuming partial files), verify, and return the model directories."""
    _check_online(repo)
    remote = list_remote(repo, revision)
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo, revision=revision, local_dir=str(local_dir), allow_patterns=list(include) if include else None)
    except _hub_errors() as exc:
        raise _offline_error(repo, exc) from exc
    bad = verify_files(Path(local_dir), remote, include)
    if bad:
        raise CheckpointError(f"verification of {local_dir} against {repo}@{revision or 'main'} failed: " + "; ".join(bad)
                              + ". Rerun the download to resume/replace these files.")
    return find_model_dirs(local_dir)


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def check_args(args: argparse.Namespace) -> None:
    """``--repo`` is ``owner/name``, ``--revision`` and ``--include`` are non-empty without spaces,
    ``--local-dir`` is a folder (or, for ``download``, does not exist yet). Before any network or write."""
    if not _REPO_ID.match(args.repo) or ".." in args.repo:
        raise CheckpointError(f"--repo={args.repo!r} is invalid: allowed a Hub model id owner/name")
    if args.revision is not None and (not args.revision.strip() or any(c.isspace() for c in args.revision)):
        raise CheckpointError(f"--revision={args.revision!r} is invalid: allowed a branch, tag or commit hash")
    for pat in args.include or []:
        if not pat.strip():
            raise CheckpointError(f"--include={pat!r} is invalid: allowed a glob of repo paths, e.g. '*1.5B*'")
    local = Path(args.local_dir)
    if args.action == "download" and local.exists() and not local.is_dir():
        raise CheckpointError(f"--local-dir={args.local_dir!r} is invalid: it exists and is not a folder")


@exit_on_error
def main(argv: Sequence[str] | None = None) -> int:
    ap = ArgumentParser(prog="python -m eval.checkpoints", description="SofT-GRPO released checkpoints")
    ap.add_argument("action", choices=["list", "download", "locate"])
    ap.add_argument("--repo", default=DEFAULT_REPO)
    ap.add_argument("--revision", default=None, help="branch, tag or commit to pin")
    ap.add_argument("--local-dir", default="checkpoints")
    ap.add_argument("--include", action="append", default=None, help="glob of repo paths (repeatable)")
    args = ap.parse_args(argv)
    check_args(args)
    if args.action == "list":
        for f in list_remote(args.repo, args.revision):
            print(f"{f.size if f.size is not None else '?':>14}  {f.path}")
        return 0
    if args.action == "download":
        dirs = download(args.local_dir, args.repo, args.revision, args.include)
    else:
        dirs, skipped = locate_models(args.local_dir)
        for folder, why in skipped:
            print(f"skipped {folder}: {why}", file=sys.stderr)
    if not dirs:
        print(f"no model directories (with config.json) under {args.local_dir}", file=sys.stderr)
        return 1
    for d in dirs:
        print(f"MODEL={d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
