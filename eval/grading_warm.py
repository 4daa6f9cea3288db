"""Imported by the grading forkserver: loads :mod:`eval.grading` and warms the LaTeX parser once,
so every forked worker (including replacements of killed ones) starts warm."""

from eval.grading import warm_up

warm_up()
