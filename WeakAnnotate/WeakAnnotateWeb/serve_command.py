"""``weakannotate serve``: the browser app (trame-slicer) on this machine, over the same logic layer.

The web face lives in the separate ``WeakAnnotateWeb`` package and is imported only inside :func:`run`, so
the logic layer and every other command never import trame.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import socket
import sys
import tempfile
from pathlib import Path

from WeakAnnotateLib.core.atomic_files import os_cause
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.core.numbers import number_option

from . import access

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


def check_listen(host: str, port: int) -> None:
    """The address is this machine's and the port is free: said at start-up, not as a trame traceback."""
    try:
        infos = socket.getaddrinfo(host, port or None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise InputError(f"--host {host}: not an address this machine can listen on ({e}).") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise InputError(
                    f"--port {port}: already in use on {host} (another server?); stop it or choose another port "
                    "(--port 0 picks a free one)."
                ) from None
            raise InputError(f"--host {host}: cannot listen there ({os_cause(e)}).") from None


def check_work_folder(work: str | Path) -> None:
    """The page saves everything into the work folder: it (or the folder it will be made in) must be writable
    before anything is loaded. Nothing is created here: a later start-up error leaves no folder behind."""
    folder = Path(work).absolute()
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"--work {folder}: {existing} is a file; choose a folder.")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-test-"):
            pass
    except OSError as e:
        raise InputError(f"--work {folder}: cannot write there ({os_cause(e)}); choose a writable folder.") from None


def run(args: argparse.Namespace) -> int:
    if args.data is not None and not (Path(args.data) / "cases.json").is_file():
        raise InputError(f"--data {args.data}: no cases.json catalogue in that folder.")
    check_listen(args.host, args.port)
    check_work_folder(args.work)
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
    secret = access.new_secret()
    access.install(app.server, secret)  # only this page, from this server, with this launch's secret
    shown = f"[{args.host}]" if ":" in args.host else args.host
    port = args.port if args.port else "PORT"
    where = f"http://{shown}:{port}/?secret={secret}" + ("" if args.port else " (PORT: the port trame prints below)")
    print(f"weakannotate serve: work folder {app.workspace.root}", flush=True)
    if box_model is not None:
        print(f"weakannotate serve: box-correction model {args.box_model}", flush=True)
    print(f"Open {where}", flush=True)
    try:
        app.server.start(host=args.host, port=args.port, open_browser=False, timeout=0, show_connection_info=False)
    finally:
        app.training.shutdown()  # a running training worker lives in its own session: stop it with the server
    return 0
