"""``weakannotate serve``: the browser app (trame-slicer) on this machine, over the same logic layer.

``serve`` runs the launcher (:mod:`WeakAnnotateWeb.launcher`): each browser tab gets its own app process, up to
``--max-sessions``. An app process is ``serve --session-child`` on a loopback port (not for users: the launcher
starts it). The web face lives in the separate ``WeakAnnotateWeb`` package and trame is imported only in an app
process, so the logic layer and every other command never import it.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from WeakAnnotateLib.core.atomic_files import os_cause
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.core.numbers import number_option
from WeakAnnotateLib.files.cases import find_case, open_data_folder
from WeakAnnotateLib.files.data_folder import resolve_inside

from . import access

NAME = "serve"
HELP = "Serve the annotation web app (slice views, extreme/surface points, box, save, training) on 127.0.0.1."

LOOPBACK_NAMES = {"localhost"}
PARENT_CHECK_S = 2.0  # an app process whose launcher is gone (killed) stops within this time


def default_work_folder() -> Path:
    """Where the page saves when ``--work`` is not given: the user's data folder
    (``$XDG_DATA_HOME/weakannotate/work``, by default ``~/.local/share/weakannotate/work``). Why not the current
    folder: annotations are the user's data; one fixed place means a case opened again from any folder finds its
    saved work, and nothing lands inside a source checkout."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "weakannotate" / "work"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        help="data folder: images (NIfTI, NRRD, MHA, DICOM series folders) and optionally a cases.json catalogue "
        "(docs/catalogue.md); the page browses it and nothing outside it (default: ../shared/data if present)",
    )
    p.add_argument(
        "--work",
        default=None,
        help="the only folder the page writes annotations to, one sub-folder per case; opening a case loads its "
        "saved work back from here (default: $XDG_DATA_HOME/weakannotate/work, i.e. ~/.local/share/weakannotate/work)",
    )
    p.add_argument("--case", help="open this case at start in every new tab (a catalogue id, or an image's path)")
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
    p.add_argument(
        "--max-sessions",
        type=number_option(1, 64, integer=True),
        default=4,
        help="browser tabs served at once, each with its own scene, points, segments and training job in its own "
        "process (default 4; each takes about the memory of one app, and while fewer run, one is started ahead for "
        "the next tab); a further tab gets a page saying all are in use",
    )
    p.add_argument(
        "--session-grace",
        type=number_option(0, 86_400),
        default=120.0,
        metavar="SECONDS",
        help="a closed tab's session (and its unsaved work) is kept this long, so a reload finds it; then it ends "
        "and its slot is free (default 120; saved work stays in the work folder)",
    )
    p.add_argument("--session-child", action="store_true", help=argparse.SUPPRESS)  # an app process (launcher)


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


def check_case(case_id: str, data: str | None) -> None:
    """``--case`` names a case of the data folder (a catalogue id, or an image's path inside it)."""
    cases = open_data_folder(data) if data is not None else None
    if cases is not None and any(c.id == case_id for c in cases):
        return
    if data is not None:
        try:
            resolve_inside(data, case_id)
            return
        except InputError:
            pass
    find_case(case_id, data)  # the catalogue's own message, with suggestions


def run(args: argparse.Namespace) -> int:
    if args.work is None:
        args.work = str(default_work_folder())
    if args.data is not None:
        open_data_folder(args.data)  # a folder of images or a catalogue: its own message otherwise
    check_listen(args.host, args.port)
    check_work_folder(args.work)
    box_model = None
    if args.box_model is not None:
        from WeakAnnotateLib.methods.box_correction.classifier import load_box_model

        try:
            box_model = load_box_model(args.box_model)  # a missing or bad folder: one line, exit 2, before listening
        except InputError as e:
            raise InputError(f"--box-model: {e}") from None
    if args.case is not None and not args.session_child:
        check_case(args.case, args.data)
    if not is_loopback(args.host):
        print(
            f"weakannotate serve: WARNING: listening on {args.host}: anyone who can reach this address can view "
            f"the images and write annotations into {args.work}. There is no login; use 127.0.0.1 and an SSH "
            "tunnel unless this network is trusted.",
            file=sys.stderr,
        )
    if args.session_child:
        return run_app_process(args, box_model)
    return serve_sessions(args)


def child_command(args: argparse.Namespace) -> list[str]:
    """The argv of an app process, but its ``--port``: this command's own options, on loopback, as a session."""
    base = [sys.executable, "-m", "WeakAnnotateLib.cli.main", "serve", "--session-child", "--host", "127.0.0.1"]
    for option in ("data", "work", "case", "box_model"):
        value = getattr(args, option)
        if value is not None:
            base += [f"--{option.replace('_', '-')}", str(Path(value).absolute()) if option != "case" else value]
    return base


def serve_sessions(args: argparse.Namespace) -> int:
    """The launcher on the served address: one app process per tab (see :mod:`WeakAnnotateWeb.launcher`).

    Everything is checked by now, so this process becomes the launcher alone (``exec``, same process id): the
    launcher needs neither the command line's imports nor a box model loaded to check it (~0.3-1 GB)."""
    config = {
        "child": child_command(args),
        "max_sessions": int(args.max_sessions),
        "grace_s": float(args.session_grace),
        "host": args.host,
        "port": int(args.port),
        "work": str(Path(args.work).expanduser().resolve()),
    }
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "WeakAnnotateWeb.launcher", json.dumps(config)])
    return 0  # not reached


def _exit_with_parent(app: Any) -> None:
    """An app process stops (cancelling its training job) when its launcher is gone, even if it was killed."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        app.training.shutdown()
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def run_app_process(args: argparse.Namespace, box_model: Any) -> int:
    """One app (one scene) on this address: what each tab's session runs."""
    # trame parses sys.argv by default; our options are not its options.
    os.environ["TRAME_ARGS"] = ""
    from WeakAnnotateWeb.app import create_app  # the web face, imported only here

    app = create_app(args.data, args.work, case_id=args.case, box_model=box_model, box_model_path=args.box_model)
    _exit_with_parent(app)
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
