"""Test helper: compile a function with ``fullgraph=True`` and prove its graph has no host synchronisation.

``torch.compile(fullgraph=True)`` alone refuses ``bool(tensor)`` and ``.tolist()``, but in recent
torch versions it captures ``.item()`` and ``nonzero()`` / boolean-mask indexing as unbacked
symbolic values. The recording backend below therefore also rejects every graph node that reads
a tensor value on the host or makes a shape depend on data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

SYNC_OPS = ("item", "tolist", "nonzero", "_local_scalar_dense", "_assert_scalar", "masked_select", "unique", "argwhere")


def graph_ops(fn: Callable[..., Any], *args: Any) -> tuple[list[str], Any]:
    """Compile ``fn`` with ``fullgraph=True`` (eager backend) and return the op names of its graph and its output."""
    seen: list[str] = []

    def backend(gm: torch.fx.GraphModule, example_inputs: list) -> Callable[..., Any]:
        for node in gm.graph.nodes:
            if node.op in ("call_function", "call_method"):
                seen.append(getattr(node.target, "__name__", str(node.target)))
        return gm.forward

    torch._dynamo.reset()
    out = torch.compile(fn, fullgraph=True, backend=backend)(*args)
    return seen, out


def assert_sync_free(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` compiled as one graph with none of :data:`SYNC_OPS`; returns the compiled output."""
    ops, out = graph_ops(fn, *args)
    bad = sorted({op for op in ops if op.split(".")[0] in SYNC_OPS})
    assert not bad, f"host synchronisation in the compiled graph: {bad}"
    return out
