"""Command line of the reference trainer::

    python -m softgrpo.train --config configs/quickstart.yaml trainer.arm=grpo key=value ...

The YAML plus dotted overrides are validated (unknown keys and bad values fail before any
model is loaded, naming the key); then the run trains, logs and checkpoints under
``trainer.default_local_dir`` (default ``runs/train/<arm>``) and resumes from its last checkpoint
with ``trainer.resume_mode=auto`` (refused when the arm, model, data or optimizer settings changed,
unless ``trainer.resume_allow_config_change=true``).

Order of work: the typed schema (:mod:`softgrpo.schema`: unknown keys, types, finite numbers,
booleans that are booleans) and the ranges and cross-field rules (``TrainConfig.validate``), the
device, the resume checkpoint (the newest whose manifest verifies), the data, the model and the
saved state; only then is the run folder locked (one trainer per folder) and written.

A config error, a missing model or data file, a corrupt dataset, an unusable checkpoint, a folder
held by another run or a refused resume prints one ``error: ...`` line and exits with status 2,
having written nothing.
"""

from __future__ import annotations

import argparse

from soft_thinking.errors import exit_on_error
from softgrpo.config import load_config
from softgrpo.input_checks import check_device_available


@exit_on_error
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="YAML config (verl key names + soft_thinking section)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    check_device_available(cfg.trainer.device)
    from softgrpo.reference.trainer import Trainer  # after the config check: torch/transformers load slowly

    Trainer(cfg).train()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
