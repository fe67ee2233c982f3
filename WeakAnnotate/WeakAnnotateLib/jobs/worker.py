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
import os
import sys
import traceback

from ..core.errors import InputError
from ..methods import registry
from ..methods.base import load_object
from ..training.job_spec import resolve_device
from ..training.progress import EXIT_BAD_SPEC, EXIT_FAILED, Progress, StopRequest
from ..training.trainer import Distributed, Trainer
from .spec import load_spec, network_of, standalone_method, validate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m WeakAnnotateLib.jobs.worker", description=__doc__)
    parser.add_argument("job", help="job spec (JSON)")
    parser.add_argument("--resume", action="store_true", help="continue from the job's last checkpoint")
    args = parser.parse_args(argv)
    StopRequest.install()
    rank = int(os.environ.get("RANK", "0"))
    standalone = standalone_method(args.job)
    if standalone is not None:  # box_patch_classifier: its own spec, loop and progress lines
        return int(load_object(standalone.standalone)(args.job, resume=args.resume))
    try:
        spec = load_spec(args.job)
        split = validate(spec, resume=args.resume)
        device = resolve_device(spec.device)
    except InputError as e:
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
        if dist is not None:
            try:
                dist.close()
            except Exception:  # noqa: BLE001 - a peer may already be gone
                pass


if __name__ == "__main__":
    sys.exit(main())
