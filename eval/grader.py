"""Batched grading in worker processes with a per-answer timeout.

math-verify's own timeouts use ``signal.alarm`` and only work on the main thread, so they are
disabled (see :mod:`eval.grading`). Here every answer runs in a worker process; the parent
waits on the worker's pipe with a deadline of ``timeout_s`` per answer. A worker that misses its
deadline is killed (SIGKILL) and replaced, and the answer gets ``status="timeout"``; a worker
that dies (e.g. killed for memory) is replaced and its answer gets ``status="parse_error"``; a
grade function that raises on one answer gives that answer ``status="error"`` (the exception in
``detail``, the traceback logged once per grader) and the rest of the batch is graded as usual.
All are counted in :attr:`Grader.counts` and in the returned statuses, never silently.

Usage::

    with Grader(workers=2, timeout_s=5.0) as g:
        results = g.grade([(completion, gold, "math500"), ...])
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from eval.grading import GradeResult, grade_answer, missing_think_end, warm_up

GradeFn = Callable[[str, Any, str], GradeResult]
Task = tuple[str, Any, str]
log = logging.getLogger(__name__)


class GraderError(RuntimeError):
    """The worker pool itself failed (a worker that cannot start); never raised for one answer."""


def _worker_main(conn: Connection, grade_fn: GradeFn) -> None:
    """Worker loop: send ``"ready"``, then receive ``(index, completion, gold, fmt)`` and send
    ``(index, ok, payload)`` until ``None`` arrives."""
    warm_up()
    conn.send("ready")
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        idx, completion, gold, fmt = msg
        try:
            res = grade_fn(completion, gold, fmt)
            conn.send((idx, True, (res.correct, res.extracted, res.status, res.detail)))
        except Exception:  # this answer alone: the parent records status "error" and logs the traceback
            conn.send((idx, False, traceback.format_exc()))


class _Worker:
    def __init__(self, ctx: Any, grade_fn: GradeFn) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child, grade_fn), daemon=True)
        self.proc.start()
        child.close()
        self.task: int | None = None
        self.deadline = 0.0

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the worker has imported everything (startup is not part of a deadline)."""
        try:
            if not self.conn.poll(timeout_s):
                raise GraderError(f"grading worker did not start within {timeout_s:g} s")
            msg = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise GraderError(f"grading worker exited during startup (exit code {self.proc.exitcode})") from exc
        if msg != "ready":
            raise GraderError(f"grading worker sent {msg!r} instead of 'ready'")

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()


class Grader:
    """Process pool that grades ``(completion, gold, benchmark_or_gold_format)`` triples.

    Args:
        workers: number of worker processes (>= 1).
        timeout_s: per-answer wall-clock limit in seconds (> 0).
        grade_fn: picklable top-level function with :func:`eval.grading.grade_answer`'s
            signature (injectable for tests and custom graders).
        start_method: multiprocessing start method. Default ``"forkserver"`` (posix; a clean
            server process with :mod:`eval.grading` preloaded forks each worker, so replacing a
            killed worker is cheap and safe in processes that hold threads), else ``"spawn"``.
        startup_timeout_s: how long a new worker may take to import math-verify.
    """

    def __init__(
        self,
        workers: int = 2,
        timeout_s: float = 5.0,
        grade_fn: GradeFn = grade_answer,
        start_method: str | None = None,
        startup_timeout_s: float = 120.0,
    ) -> None:
        if start_method is None:
            start_method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers={workers!r} is invalid: allowed an integer >= 1")
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s < math.inf:
            raise ValueError(f"timeout_s={timeout_s!r} is invalid: allowed a finite number > 0")
        if start_method not in mp.get_all_start_methods():
            raise ValueError(f"start_method={start_method!r} is invalid: allowed {mp.get_all_start_methods()}")
        self.timeout_s = float(timeout_s)
        self._grade_fn = grade_fn
        self._startup_timeout_s = startup_timeout_s
        self._ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            self._ctx.set_forkserver_preload(["eval.grading_warm"])
        self._workers = [_Worker(self._ctx, grade_fn) for _ in range(workers)]
        try:
            for w in self._workers:
                w.wait_ready(startup_timeout_s)
        except BaseException:
            for w in self._workers:
                w.kill()
            raise
        self.counts: Counter[str] = Counter()
        self.restarts = 0
        self._closed = False
        self._logged_error = False

    # -- public --------------------------------------------------------------------------
    def grade(self, tasks: Sequence[Task], *, require_think_end: bool = False) -> list[GradeResult]:
        """Grade all tasks; results come back in input order.

        ``require_think_end``: a completion without ``</think>`` gets ``status="no_think_end"``
        (score 0) without reaching a worker (:func:`eval.grading.missing_think_end`).
        """
        if self._closed:
            raise RuntimeError("Grader is closed")
        results: list[GradeResult | None] = [None] * len(tasks)
        if require_think_end:
            for i, (completion, _, _) in enumerate(tasks):
                results[i] = missing_think_end(completion)
        pending = [i for i in range(len(tasks)) if results[i] is None][::-1]  # pop() from the end = input order
        busy: dict[Connection, _Worker] = {}
        while pending or busy:
            for w in self._workers:
                if w.task is None and pending:
                    idx = pending.pop()
                    completion, gold, fmt = tasks[idx]
                    w.task, w.deadline = idx, time.monotonic() + self.timeout_s
                    w.conn.send((idx, completion, gold, fmt))
                    busy[w.conn] = w
            next_deadline = min(w.deadline for w in busy.values())
            ready = wait(list(busy), timeout=max(0.0, next_deadline - time.monotonic()))
            for conn in ready:
                w = busy.pop(conn)  # type: ignore[arg-type]
                idx = w.task
                assert idx is not None
                try:
                    ridx, ok, payload = conn.recv()  # type: ignore[union-attr]
                except (EOFError, OSError):
                    code = w.proc.exitcode
                    results[idx] = GradeResult(False, None, "parse_error", f"grading worker died (exit code {code})")
                    self._replace(w)
                    continue
                w.task = None
                results[ridx] = GradeResult(*payload) if ok else self._failed(ridx, payload)
            now = time.monotonic()
            for conn, w in list(busy.items()):
                if w.deadline <= now:
                    busy.pop(conn)
                    assert w.task is not None
                    results[w.task] = GradeResult(False, None, "timeout", f"grading took more than {self.timeout_s:g} s")
                    self._replace(w)
        out = [r for r in results if r is not None]
        assert len(out) == len(tasks)
        self.counts.update(r.status for r in out)
        return out

    def grade_one(self, completion: str, gold: Any, benchmark_or_gold_format: str, *,
                  require_think_end: bool = False) -> GradeResult:
        return self.grade([(completion, gold, benchmark_or_gold_format)], require_think_end=require_think_end)[0]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for w in self._workers:
            try:
                w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for w in self._workers:
            w.proc.join(timeout=2)
            w.kill()

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------
    def _failed(self, idx: int, tb: str) -> GradeResult:
        """The result of an answer whose grade function raised: ``status="error"``, counted."""
        last = (tb.strip().splitlines() or ["unknown error"])[-1]
        if not self._logged_error:
            log.warning("grade function raised on answer %d (status 'error'; further ones only counted):\n%s", idx, tb)
            self._logged_error = True
        return GradeResult(False, None, "error", f"grade function raised: {last}"[:300])

    def _replace(self, w: _Worker) -> None:
        w.kill()
        self.restarts += 1
        new = _Worker(self._ctx, self._grade_fn)
        self._workers[self._workers.index(w)] = new
        new.wait_ready(self._startup_timeout_s)
