"""Command line of the reference trainer::

    python -m softgrpo.train --config configs/quickstart.yaml trainer.arm=grpo key=value ...

The YAML plus dotted overrides are validated (unknown keys and bad values fail before any
model is loaded, naming the key); then the run trains, logs and checkpoints under
``trainer.default_local_dir`` and resumes from its last checkpoint with ``trainer.resume_mode=auto``.
"""

from __future__ import annotations

import argparse

from softgrpo.config import load_config
from softgrpo.reference.trainer import Trainer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="YAML config (verl key names + soft_thinking section)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    Trainer(cfg).train()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
