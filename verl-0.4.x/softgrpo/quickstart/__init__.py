"""The embedded default (``python -m softgrpo.quickstart``): see ``__main__`` for the command line."""

from softgrpo.quickstart.pipeline import ARMS, CHECKPOINTS, MODES

__all__ = ["ARMS", "CHECKPOINTS", "MODES"]
