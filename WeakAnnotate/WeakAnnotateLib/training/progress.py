"""What every training job shows the world: JSON progress lines, exit codes, and the stop request (SIGTERM).

Kept apart from the training loop (:mod:`.trainer`, torch) so that a face watching a job, and a job with its
own loop (box_patch_classifier), use the same contract without loading torch.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..core.atomic_files import atomic_output

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
