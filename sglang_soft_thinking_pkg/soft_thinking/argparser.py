"""An ``argparse.ArgumentParser`` whose usage errors follow the toolkit's rule: one line
``error: <message>`` on stderr and exit status 2 (argparse's own prints the usage block first and
prefixes the program name). ``--help`` is unchanged."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class ArgumentParser(argparse.ArgumentParser):
    """Drop-in ``argparse.ArgumentParser``; subparsers inherit the behaviour."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)
