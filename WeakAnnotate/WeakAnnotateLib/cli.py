"""The ``weakannotate`` command: one sub-command per module in ``commands/``.

Every sub-command module has ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
Bad input raises :class:`~WeakAnnotateLib.errors.InputError`; it is printed as one line and the command
exits with status 2, having written nothing.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .errors import InputError

COMMAND_MODULES = (
    "evaluate", "simulate", "demo", "extreme_points", "dataset", "train", "predict", "serve", "surface_template",
    "box_correct",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="weakannotate",
        description="Weakly supervised 3D segmentation from boxes, extreme points and surface points.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"{__package__}.commands.{name}")
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except InputError as e:
        print(f"weakannotate {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"weakannotate {args.command}: interrupted; nothing was written.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
