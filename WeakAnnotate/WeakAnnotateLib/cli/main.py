"""The ``weakannotate`` command: the generic sub-commands in ``cli/commands/``, each method's own command (its
descriptor's ``command``), and commands other installed packages declare (the web app's ``serve``).

Every sub-command module has ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
Bad input raises :class:`~WeakAnnotateLib.core.errors.InputError`; it is printed as one line and the command
exits with status 2, having written nothing. A write that fails (full disk, read-only folder) raises
:class:`~WeakAnnotateLib.core.errors.WriteError`: one line, exit status 1, the previous file unchanged.

Why an entry-point group for ``serve``: the web face is a separate package above the logic layer; it declares
its command in ``pyproject.toml`` (``[project.entry-points."weakannotate.commands"]``) and the logic layer
never imports it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from ..core.errors import InputError, WriteError
from ..methods import registry

GENERIC_COMMANDS = (
    "evaluate", "simulate", "demo", "methods", "dataset", "train", "predict", "export", "refine", "loop",
)  # fmt: skip
ENTRY_POINT_GROUP = "weakannotate.commands"


def command_modules() -> list[str]:
    """Import paths of every sub-command module: generic, then the methods', then the declared ones."""
    names = [f"{__package__}.commands.{name}" for name in GENERIC_COMMANDS]
    names += [m.command for m in registry.annotation_methods() if m.command]
    names += [ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)]
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="weakannotate",
        description="Weakly supervised 3D segmentation from boxes, extreme points and surface points.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in command_modules():
        module = importlib.import_module(name)
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except WriteError as e:
        print(f"weakannotate {args.command}: error: {e}", file=sys.stderr)
        return 1
    except InputError as e:
        print(f"weakannotate {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"weakannotate {args.command}: interrupted; nothing was written.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
