"""Reading another project's source as text (the source-contract tests never import what they check)."""

from __future__ import annotations


def ordered(text: str, *needles: str) -> bool:
    """Every needle occurs, each after the previous one."""
    at = 0
    for n in needles:
        at = text.find(n, at)
        if at < 0:
            return False
        at += len(n)
    return True
