"""``weakannotate methods [--json]``: the method registry, for people and for other tools."""

from __future__ import annotations

import argparse
import json

from ...methods import registry

NAME = "methods"
HELP = "List the annotation methods, their training methods and those methods' job-spec fields (--json for tools)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the registry as JSON (a list, one object per method)")


def run(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(registry.to_json(), indent=1))
        return 0
    for m in registry.annotation_methods():
        face = f"panel {m.module}" if m.module else "hub panel"
        extra = f", web mode {m.web_mode}" if m.web_mode else ""
        print(f"{m.name} — {m.title} (annotation: {m.annotation}; {face}{extra})")
        print(f"    {m.help}")
        for t in m.training_methods:
            kind = "reference masks" if t.reference else "weak marks"
            print(f"  train: {t.name} — {t.title} [{t.network}, {kind}]")
            for f in t.fields():
                print(f"      {f.name} = {json.dumps(f.default)}  ({f.type}) {f.help}")
    return 0
