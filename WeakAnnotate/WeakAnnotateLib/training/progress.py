"""What every training job shows the world: JSON progress lines, exit codes, and the stop request (SIGTERM).

Kept apart from the training loop (:mod:`.trainer`, torch) so that a face watching a job, and a job with its
own loop (box_patch_classifier), use the same contract without loading torch.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..core.atomic_files import atomic_output
from ..core.errors import InputError

EXIT_DONE, EXIT_FAILED, EXIT_BAD_SPEC, EXIT_CANCELLED = 0, 1, 2, 3
PROGRESS_FILE = "progress.jsonl"


class Progress:
    """JSON lines to stdout and to the job's progress file (rank 0 only)."""

    def __init__(self, output: Path | None, enabled: bool = True) -> None:
        self.enabled = enabled
        self.file = None
        if enabled and output is not None:
            output.mkdir(parents=True, exist_ok=True)
            self.file = open(output / PROGRESS_FILE, "a", encoding="utf-8")  # noqa: SIM115

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        line = {"event": event, "time": round(time.time(), 3), **fields}
        if self.enabled:
            text = json.dumps(finite(line), default=json_default, allow_nan=False)
            print(text, flush=True)
            if self.file is not None:
                self.file.write(text + "\n")
                self.file.flush()
        return line

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def finite(value: Any) -> Any:
    """NaN and ±Inf become null: ``progress.jsonl`` stays valid JSON (bare ``NaN`` is not) for every reader."""
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def atomic_json(obj: Any, path: Path) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, default=json_default), encoding="utf-8")


class StopRequest:
    """Set by SIGTERM/SIGINT; checked after every step."""

    requested = False

    @classmethod
    def install(cls) -> None:
        def handler(signum: int, frame: Any) -> None:
            cls.requested = True

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


LOCK_FILE = "job.lock"

try:  # POSIX; desktop Slicer on Windows has msvcrt instead (this module must import everywhere)
    import fcntl

    def _try_lock(f: Any) -> None:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(f: Any) -> None:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)

except ImportError:  # pragma: no cover - Windows
    import msvcrt

    def _try_lock(f: Any) -> None:
        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock(f: Any) -> None:
        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)


class JobBusy(InputError):
    """A job is already running in the folder (its lock is held)."""


class JobLock:
    """One running job per job folder: an exclusive ``flock`` on ``OUTPUT/job.lock`` held by the job's process
    for its whole life (the kernel drops it when the process ends, however it ends), with the holder's PID in
    the file for the message. Why: two identical starts, or a ``--resume`` of a running job, used to train side
    by side and interleave one ``progress.jsonl``."""

    def __init__(self, output: Path) -> None:
        self.path = Path(output) / LOCK_FILE
        self._file: Any = None

    def acquire(self) -> None:
        """Take the lock, or raise InputError naming the running job's PID."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the job's life
        try:
            _try_lock(f)
        except OSError:
            f.close()
            raise JobBusy(self.busy_message(self.holder())) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            _unlock(self._file)
            self._file.close()
            self._file = None

    def holder(self) -> int | None:
        """The PID of the process holding the lock, or None when no job runs in the folder."""
        if not self.path.is_file():
            return None
        with open(self.path, "a+", encoding="utf-8") as f:
            try:
                _try_lock(f)
            except OSError:
                f.seek(0)
                text = f.read().strip()
                return int(text) if text.isdigit() else -1
            _unlock(f)
        return None

    def check_free(self) -> None:
        """Raise :class:`JobBusy` when a job runs in the folder (without creating anything)."""
        pid = self.holder()
        if pid is not None:
            raise JobBusy(self.busy_message(pid))

    def busy_message(self, pid: int | None) -> str:
        who = f"PID {pid}" if pid and pid > 0 else "another process"
        return (
            f"output: a job is running in {self.path.parent} ({who}); wait for it to end or cancel it before "
            "starting or resuming it again."
        )

    def __enter__(self) -> JobLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
