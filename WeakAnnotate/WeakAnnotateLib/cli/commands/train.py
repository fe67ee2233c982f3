"""``weakannotate train --job JOB.json``: run a training job in the foreground, progress as JSON lines."""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys

from ...core.numbers import number_option
from ...jobs.spec import load_any, validate_any

PR_SET_PDEATHSIG = 1
NAME = "train"
HELP = "Train a network from a job spec (JSON); progress as JSON lines; --resume, --nproc N for DDP."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--job", required=True, help="job spec (see docs/training.md; methods: weakannotate methods)")
    p.add_argument("--resume", action="store_true", help="continue from the job's last checkpoint")
    p.add_argument(
        "--nproc",
        type=number_option(1, 64, integer=True),
        default=1,
        help="processes (GPUs) for DDP through torchrun (default 1)",
    )


def die_with_parent() -> None:
    """In the child, before exec: SIGTERM when this process ends (Linux ``PR_SET_PDEATHSIG``; elsewhere a no-op)."""
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError, TypeError):
        pass


def run(args: argparse.Namespace) -> int:
    # why here: `weakannotate --help` imports every command; torch loads only when a job runs
    from ...jobs.worker import main as worker_main

    # Rejected before anything starts, with the field named (InputError → exit status 2).
    validate_any(load_any(args.job), resume=args.resume)
    worker_args = [args.job] + (["--resume"] if args.resume else [])
    if args.nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={args.nproc}",
            "-m",
            "WeakAnnotateLib.jobs.worker",
            *worker_args,
        ]
        # torchrun dies with this command (SIGTERM, SIGKILL), and its workers watch torchrun (jobs/worker.py)
        return subprocess.call(cmd, env=dict(os.environ), preexec_fn=die_with_parent if os.name == "posix" else None)
    return worker_main(worker_args)
