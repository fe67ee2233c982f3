"""``weakannotate train --job JOB.json``: run a training job in the foreground, progress as JSON lines."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

NAME = "train"
HELP = "Train a network from a job spec (JSON); progress as JSON lines; --resume, --nproc N for DDP."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--job", required=True, help="job spec (see docs/training.md)")
    p.add_argument("--resume", action="store_true", help="continue from the job's last checkpoint")
    p.add_argument("--nproc", type=int, default=1, help="processes (GPUs) for DDP through torchrun (default 1)")


def run(args: argparse.Namespace) -> int:
    from ..training.box_correction import is_box_job, run_box_job
    from ..training.job_spec import load_spec, validate
    from ..training.worker import main as worker_main

    if is_box_job(args.job):  # the box-correction patch classifier: its own short job (training/box_correction.py)
        return run_box_job(args.job, resume=args.resume)
    # Rejected before anything starts, with the field named (InputError → exit status 2).
    validate(load_spec(args.job), resume=args.resume)
    worker_args = [args.job] + (["--resume"] if args.resume else [])
    if args.nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={args.nproc}",
            "-m",
            "WeakAnnotateLib.training.worker",
            *worker_args,
        ]
        return subprocess.call(cmd, env=dict(os.environ))
    return worker_main(worker_args)
