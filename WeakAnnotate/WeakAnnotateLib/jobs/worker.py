"""The training worker: ``python -m WeakAnnotateLib.jobs.worker JOB.json [--resume]``.

Why its own process: a panel must never freeze, and a crash or an out-of-memory kill must not take Slicer
down. Under ``torchrun`` (env ``RANK``/``WORLD_SIZE``) the same worker runs data-parallel (DDP: gloo on CPU,
nccl on CUDA, a ``DistributedSampler`` per rank); rank 0 alone writes progress, checkpoints and the model.

Contract (``docs/training.md``):

* progress: one JSON object per line on stdout and appended to ``OUTPUT/progress.jsonl``; every line has
  ``event`` and ``time``; ``epoch`` lines carry epoch, epochs, round, step, loss, val_dice,
  seconds_per_epoch, eta_s; the last line is ``done``, ``cancelled`` or ``failed``;
* ``OUTPUT/checkpoints/last.pt`` after every epoch, written atomically; ``--resume`` continues after it;
* SIGTERM (or SIGINT) → stop after the current step, a ``cancelled`` line, exit status 3;
* ``model.pt`` then ``model.json`` only on success, each atomically: a job that did not finish has no
  ``model.json`` (and :func:`~WeakAnnotateLib.networks.prediction.load_model` refuses it).

Exit status: 0 done, 2 bad spec (nothing started), 3 cancelled, 1 failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback

from ..core.errors import InputError
from ..methods import registry
from ..methods.base import load_object
from ..training.job_spec import resolve_device
from ..training.progress import EXIT_BAD_SPEC, EXIT_CANCELLED, EXIT_FAILED, JobBusy, JobLock, Progress, StopRequest
from ..training.trainer import Distributed, Trainer
from .spec import load_spec, network_of, standalone_method, validate

PARENT_POLL_S = 1.0
PARENT_GRACE_S = 15.0


def watch_parent() -> None:
    """A DDP worker ends when its launcher does (torchrun killed, or ``weakannotate train --nproc`` stopped):
    re-parented, it asks to stop after its step, and leaves outright if a dead peer keeps it waiting. Why a
    thread and not PR_SET_PDEATHSIG: that signal follows the launching *thread*, which torchrun does not keep."""
    parent = os.getppid()

    def loop() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        StopRequest.requested = True
        time.sleep(PARENT_GRACE_S)
        os._exit(EXIT_CANCELLED)

    threading.Thread(target=loop, name="watch-parent", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m WeakAnnotateLib.jobs.worker", description=__doc__)
    parser.add_argument("job", help="job spec (JSON)")
    parser.add_argument("--resume", action="store_true", help="continue from the job's last checkpoint")
    args = parser.parse_args(argv)
    StopRequest.install()
    rank = int(os.environ.get("RANK", "0"))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        watch_parent()
    standalone = standalone_method(args.job)
    if standalone is not None:  # box_patch_classifier: its own spec, loop, progress lines and lock
        return int(load_object(standalone.standalone)(args.job, resume=args.resume))
    lock = None
    try:
        spec = load_spec(args.job)
        if rank == 0:
            JobLock(spec.output_path).check_free()
        split = validate(spec, resume=args.resume)
        device = resolve_device(spec.device)
        if rank == 0:
            lock = JobLock(spec.output_path)
            lock.acquire()
    except InputError as e:
        if isinstance(e, JobBusy):  # the running job's progress file is not ours to write into
            print(json.dumps({"event": "failed", "error": str(e), "stage": "validation"}), flush=True)
            print(f"weakannotate train: error: {e}", file=sys.stderr)
            return EXIT_BAD_SPEC
        # Nothing started: one line on stdout (and in the progress file when the output folder is known).
        out = None
        try:
            out = load_spec(args.job).output_path
            out = out if out.is_dir() else None
        except InputError:
            pass
        p = Progress(out, enabled=rank == 0)
        p.emit("failed", error=str(e), stage="validation")
        p.close()
        print(f"weakannotate train: error: {e}", file=sys.stderr)
        return EXIT_BAD_SPEC

    import torch

    torch.set_num_threads(max(1, int(os.environ.get("WEAKANNOTATE_THREADS", torch.get_num_threads()))))
    progress = Progress(spec.output_path, enabled=rank == 0)
    dist = None
    try:
        dist = Distributed(device)
        info = registry.training_method(spec.method)
        trainer = Trainer(spec, split, dist, progress, info.trainer_class(), network_of(spec))
        return trainer.run(resume=args.resume)
    except Exception as e:  # every failure ends with one "failed" line the panel can show
        tail = traceback.format_exc().strip().splitlines()[-8:]
        message = str(e) if isinstance(e, InputError) else f"{type(e).__name__}: {e}"
        progress.emit("failed", error=message, traceback=tail, stage="training")
        print(traceback.format_exc(), file=sys.stderr)
        return EXIT_FAILED
    finally:
        progress.close()
        if lock is not None:
            lock.release()
        if dist is not None:
            try:
                dist.close()
            except Exception:  # noqa: BLE001 - a peer may already be gone
                pass


if __name__ == "__main__":
    sys.exit(main())
