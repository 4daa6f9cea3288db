"""Test helper: prove that a compiled graph's pure index arithmetic fits in int32.

Inductor folds ``+ - * // %`` of aranges and constants into index expressions (its index
propagation); Triton evaluates those in int32 when the tensors are small, so a constant or a value
of 2^31 or more there fails to compile on a GPU ("Scalar 2654435769 is out of range for type
int32": the Philox key schedule, first seen on an H200). A CPU compiles C++ with 64-bit indices and
never shows the fault, so this helper looks for it in the aten graph: it marks the values that are
built from aranges and constants by arithmetic and view ops only (a bitwise op, a comparison, a
``where`` or a loaded input ends such a chain, as it ends Inductor's), evaluates the graph on the
example inputs, and reports each such arithmetic node whose constant or value leaves int32.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
from torch.fx.experimental.proxy_tensor import make_fx

INT32 = 2**31
SOURCES = {"arange", "scalar_tensor", "full", "zeros", "ones", "lift_fresh_copy"}
ARITH = {"add", "sub", "rsub", "mul", "neg", "remainder", "floor_divide", "abs", "minimum", "maximum"}
VIEWS = {"view", "_unsafe_view", "expand", "unsqueeze", "squeeze", "permute", "reshape", "clone", "flip", "select",
         "slice", "unbind", "t", "transpose", "alias", "_to_copy", "stack", "cat", "repeat", "detach"}


def _op(node: torch.fx.Node) -> str:
    if node.target is operator.getitem:
        return "getitem"
    return getattr(node.target, "_opname", str(node.target))


def _ints(value: Any) -> list[torch.Tensor]:
    items = value if isinstance(value, (list, tuple)) else [value]
    return [t for t in items if isinstance(t, torch.Tensor) and not t.is_floating_point() and t.dtype != torch.bool]


def wide_index_nodes(gm: torch.fx.GraphModule, *args: Any) -> list[str]:
    """``gm``'s index-only arithmetic nodes with a constant or a value outside int32, as readable lines."""
    index_only: set[torch.fx.Node] = set()
    bad: list[str] = []

    class Walk(torch.fx.Interpreter):
        def run_node(self, node: torch.fx.Node) -> Any:
            out = super().run_node(node)
            if node.op != "call_function":
                return out
            op = _op(node)
            if op in SOURCES or (op in ARITH | VIEWS | {"getitem"} and all(a in index_only for a in node.all_input_nodes)):
                index_only.add(node)
                if op in ARITH:
                    consts = [a for a in node.args if isinstance(a, int) and not isinstance(a, bool)]
                    peak = max([abs(c) for c in consts] + [int(t.abs().max()) for t in _ints(out) if t.numel()], default=0)
                    if peak >= INT32:
                        bad.append(f"{node.format_node()}  (peak |value| {peak})")
            return out

    Walk(gm).run(*args)
    return bad


def wide_index_in_compiled(fn: Callable[..., Any], *args: Any) -> list[str]:
    """Trace ``fn(*args)`` as Dynamo compiles it, then check its aten graph with :func:`wide_index_nodes`.

    Returns the offending lines (none when the graph is safe); ``fn`` may take dataclasses
    (Dynamo flattens them), its graph must be one (``fullgraph=True``).
    """
    found: list[str] = []

    def backend(gm: torch.fx.GraphModule, example_inputs: list) -> Callable[..., Any]:
        aten = make_fx(gm, tracing_mode="real")(*example_inputs)
        found.extend(wide_index_nodes(aten, *example_inputs))
        return gm.forward

    torch._dynamo.reset()
    torch.compile(fn, fullgraph=True, backend=backend)(*args)
    return found
