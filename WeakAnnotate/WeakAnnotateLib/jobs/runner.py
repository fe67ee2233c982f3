"""A training job as seen from a face (panel, web app, script): start, poll, cancel, resume — never blocking.

Why polling a file rather than reading the pipe: a panel polls from a timer on the GUI thread, and reading a
pipe can block; the worker appends complete JSON lines to ``progress.jsonl`` and :meth:`TrainingJob.poll`
reads only what is new (keeping a half-written last line for the next poll). The worker's stdout and stderr
go to ``worker.log`` so that a crash (a traceback, an out-of-memory kill) can be shown as the log's tail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.errors import InputError
from ..training.job_spec import JobSpec
from ..training.progress import EXIT_BAD_SPEC, EXIT_CANCELLED, PROGRESS_FILE, JobLock
from .spec import load_any, validate_any

LOG_FILE = "worker.log"
TERMINAL = ("done", "cancelled", "failed")


class TrainingJob:
    """One job folder and (at most) one running worker process."""

    def __init__(
        self, spec_path: str | Path, *, python: str | None = None, nproc: int = 1, env: dict[str, str] | None = None
    ) -> None:
        self.spec_path = Path(spec_path)
        self.spec: Any = load_any(self.spec_path)  # a JobSpec, or a standalone method's spec
        self.python = python or sys.executable
        self.nproc = int(nproc)
        self.env = env
        self.process: subprocess.Popen | None = None
        self.state = "idle"  # idle, running, done, cancelled, failed
        self.events: list[dict[str, Any]] = []
        self.error: str = ""
        self._offset = 0
        self._partial = ""
        self._log = None
        self._cancel_asked = False

    @classmethod
    def write_spec(cls, spec: JobSpec | dict[str, Any], path: str | Path) -> Path:
        """Write a job spec (e.g. gathered in a panel) as JSON, for the worker and for the record."""
        doc = dict(spec) if isinstance(spec, dict) else spec.to_json()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        return path

    @classmethod
    def run_to_end(cls, spec: dict[str, Any], path: str | Path, *, env: dict[str, str] | None = None) -> TrainingJob:
        """Write ``spec`` to ``path``, run the worker and wait (benchmarks, scripts). A job that does not end
        "done" raises RuntimeError with the worker's last log lines."""
        job = cls(cls.write_spec(spec, path), env=env)
        job.start()
        if job.wait() != "done":
            raise RuntimeError(f"Training job {path} ended {job.state}: {job.error}\n{job.log_tail()}")
        return job

    # -- paths --
    @property
    def output(self) -> Path:
        return self.spec.output_path

    @property
    def progress_path(self) -> Path:
        return self.output / PROGRESS_FILE

    @property
    def log_path(self) -> Path:
        return self.output / LOG_FILE

    # -- control --
    def command(self, resume: bool = False) -> list[str]:
        module = getattr(self.spec, "worker_module", "WeakAnnotateLib.jobs.worker")  # pseudo-labels: their own
        worker = ["-m", module, str(self.spec_path)] + (["--resume"] if resume else [])
        if self.nproc > 1:
            return [
                self.python,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={self.nproc}",
                *worker,
            ]
        return [self.python, *worker]

    def start(self, resume: bool = False) -> None:
        """Validate (raising InputError naming the field), then launch the worker and return at once."""
        if self.running:
            raise InputError("This job is already running; cancel it first.")
        self.spec = load_any(self.spec_path)
        JobLock(self.output).check_free()  # started elsewhere (another panel, tab or terminal)
        validate_any(self.spec, resume=resume)
        self.output.mkdir(parents=True, exist_ok=True)
        self._offset = self.progress_path.stat().st_size if self.progress_path.is_file() else 0
        self._partial = ""
        self.error = ""
        self._cancel_asked = False
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("PYTHONIOENCODING", "utf-8")  # the progress lines carry λ, ψ: never the locale's ASCII
        self.process = subprocess.Popen(
            self.command(resume),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # a Ctrl-C in the launching terminal does not hit the worker
        )
        self.state = "running"

    def resume(self) -> None:
        self.start(resume=True)

    def cancel(self) -> None:
        """Ask the worker to stop after its current step (SIGTERM); poll() reports "cancelled"."""
        if self.running:
            self._cancel_asked = True
            try:
                if self.nproc > 1:
                    os.killpg(self.process.pid, signal.SIGTERM)  # torchrun and its workers
                else:
                    self.process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def poll(self) -> list[dict[str, Any]]:
        """New progress events since the last call (never blocks); updates :attr:`state`."""
        new = self._read_new()
        for e in new:
            if e.get("event") in TERMINAL:
                self.state = e["event"]
                if e["event"] == "failed":
                    self.error = str(e.get("error", ""))
        if self.process is not None and self.state == "running":
            code = self.process.poll()
            if code is not None:
                new += self._read_new()
                terminal = [e for e in new if e.get("event") in TERMINAL]
                if terminal:
                    self.state = terminal[-1]["event"]
                elif code == 0:
                    self.state = "done"
                elif code == EXIT_CANCELLED or (self._cancel_asked and code == -signal.SIGTERM):
                    # SIGTERM before the worker installed its handler (a cancel in its first second) is a cancel
                    self.state = "cancelled"
                else:
                    # Killed (out of memory, SIGKILL) or crashed before it could say so.
                    self.state = "failed"
                    reason = f"signal {-code}" if code < 0 else f"exit status {code}"
                    if code == EXIT_BAD_SPEC:
                        reason = "the job spec was rejected"
                    self.error = f"The training worker stopped ({reason})."
                    event = {"event": "failed", "time": time.time(), "error": self.error, "log_tail": self.log_tail()}
                    new.append(event)
        if self.state == "failed":
            for e in new:
                if e.get("event") == "failed":
                    e.setdefault("log_tail", self.log_tail())
                    self.error = str(e.get("error", self.error))
        if (
            self.state != "running"
            and self._log is not None
            and (self.process is None or self.process.poll() is not None)
        ):
            self._log.close()
            self._log = None
        self.events += new
        return new

    def _read_new(self) -> list[dict[str, Any]]:
        path = self.progress_path
        if not path.is_file():
            return []
        with open(path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        self._offset += len(chunk)
        text = self._partial + chunk.decode("utf-8", errors="replace")
        lines = text.split("\n")
        self._partial = lines.pop()  # "" when the chunk ended with a newline
        out = []
        for line in lines:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def wait(self, timeout: float | None = None, interval: float = 0.2) -> str:
        """Poll until the worker ends (for scripts and tests; a panel uses a timer instead)."""
        t0 = time.monotonic()
        while True:
            self.poll()
            if self.process is None or (self.process.poll() is not None and self.state != "running"):
                self.poll()
                return self.state
            if timeout is not None and time.monotonic() - t0 > timeout:
                raise TimeoutError(f"training job still {self.state} after {timeout} s")
            time.sleep(interval)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the worker's log (stdout + stderr), for a crash report."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 16_384))
                text = f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def history(self, kinds: Sequence[str] = ("epoch",)) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") in kinds]
