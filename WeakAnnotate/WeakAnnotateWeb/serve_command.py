"""``weakannotate serve``: the browser app (trame-slicer) on this machine, over the same logic layer.

The web face lives in the separate ``WeakAnnotateWeb`` package and is imported only inside :func:`run`, so
the logic layer and every other command never import trame.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.core.numbers import number_option

NAME = "serve"
HELP = "Serve the annotation web app (slice views, extreme/surface points, box, save, training) on 127.0.0.1."

LOOPBACK_NAMES = {"localhost"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="dataset folder with a cases.json catalogue (default: ../shared/data if present)")
    p.add_argument(
        "--work",
        default="weakannotate-work",
        help="the only folder the page writes annotations to, one sub-folder per case (default ./weakannotate-work)",
    )
    p.add_argument("--case", help="open this catalogue case at start")
    p.add_argument(
        "--port",
        type=number_option(0, 65_535, integer=True),
        default=8080,
        help="port (default 8080; 0 picks a free one)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only); any other address is reachable by "
        "others on the network and prints a warning",
    )
    p.add_argument(
        "--box-model",
        metavar="FOLDER",
        help="a trained box-correction classifier (a folder with model.json and model.pt, from 'weakannotate "
        "train' with method box_patch_classifier): enables 'Correct boxes' in box mode",
    )


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be 0..65535, got {args.port}.")
    if args.data is not None and not (Path(args.data) / "cases.json").is_file():
        raise InputError(f"--data {args.data}: no cases.json catalogue in that folder.")
    box_model = None
    if args.box_model is not None:
        from WeakAnnotateLib.methods.box_correction.classifier import load_box_model

        try:
            box_model = load_box_model(args.box_model)  # a missing or bad folder: one line, exit 2, before listening
        except InputError as e:
            raise InputError(f"--box-model: {e}") from None
    if not is_loopback(args.host):
        print(
            f"weakannotate serve: WARNING: listening on {args.host}: anyone who can reach this address can view "
            f"the images and write annotations into {args.work}. There is no login; use 127.0.0.1 and an SSH "
            "tunnel unless this network is trusted.",
            file=sys.stderr,
        )
    # trame parses sys.argv by default; our options are not its options.
    os.environ["TRAME_ARGS"] = ""
    from WeakAnnotateWeb.app import create_app  # the web face, imported only here

    app = create_app(args.data, args.work, case_id=args.case, box_model=box_model, box_model_path=args.box_model)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    where = f"http://{shown}:{args.port}/" if args.port else f"http://{shown}:PORT/ (the port trame prints below)"
    print(f"weakannotate serve: work folder {app.workspace.root}", flush=True)
    if box_model is not None:
        print(f"weakannotate serve: box-correction model {args.box_model}", flush=True)
    print(f"Open {where}", flush=True)
    try:
        app.server.start(host=args.host, port=args.port, open_browser=False, timeout=0, show_connection_info=True)
    finally:
        app.training.shutdown()  # a running training worker lives in its own session: stop it with the server
    return 0
