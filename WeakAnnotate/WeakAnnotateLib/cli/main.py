"""The ``weakannotate`` command: one sub-command per module in ``commands/``.

Every sub-command module has ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
Bad input raises :class:`~WeakAnnotateLib.core.errors.InputError`; it is printed as one line and the command
exits with status 2, having written nothing.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..core.errors import InputError

COMMAND_MODULES = (
    "WeakAnnotateLib.cli.commands.evaluate", "WeakAnnotateLib.cli.commands.simulate",
    "WeakAnnotateLib.cli.commands.demo",
    "WeakAnnotateLib.methods.extreme_points.command", "WeakAnnotateLib.cli.commands.dataset",
    "WeakAnnotateLib.cli.commands.train", "WeakAnnotateLib.cli.commands.predict", "WeakAnnotateWeb.serve_command",
    "WeakAnnotateLib.methods.surface_template.command", "WeakAnnotateLib.methods.box_correction.command",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="weakannotate",
        description="Weakly supervised 3D segmentation from boxes, extreme points and surface points.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
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
