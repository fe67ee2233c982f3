"""The page's training panel: build a small dataset, start / watch / cancel a job, apply the model to the case.

Nothing here blocks the event loop for long: the dataset is built and the model applied in a worker thread
(``asyncio.to_thread``; numpy and torch release the GIL), the job runs in its own process
(:class:`~WeakAnnotateLib.jobs.runner.TrainingJob`) and is watched by an asyncio task that calls
``TrainingJob.poll`` (reads only what is new in ``progress.jsonl``) every :data:`POLL_S` seconds. Only writing
the predicted mask into the segmentation node runs in the loop (MRML is not thread-safe).

Every path is inside ``<work folder>/training/``: datasets in ``datasets/<name>``, jobs in ``jobs/<name>``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from WeakAnnotateLib.core.errors import InputError

from .workspace import safe_name

log = logging.getLogger(__name__)

METHODS = ["full_supervision", "extreme_point_network"]
POLL_S = 0.5
MAX_CASES = 3
MAX_EPOCHS = 200
# Small enough for 2 CPU cores (seconds an epoch on the cropped catalogue cases); see docs/training.md.
SMALL_SPEC = {
    "batch_size": 1,
    "patch_size": [32, 32, 32],
    "channels": [4, 8, 16],
    "spacing_mm": 4.0,
    "device": "cpu",
    "rounds": 2,
}
CURVE_W, CURVE_H = 290, 70


def curve_svg(losses: list[float], dices: list[float]) -> str:
    """An SVG with the step losses (amber, scaled to their maximum) and the validation Dice (green, 0–1)."""

    def polyline(values: list[float], top: float, color: str) -> str:
        if not values:
            return ""
        n = len(values)
        pts = []
        for i, v in enumerate(values):
            x = CURVE_W * (i / (n - 1) if n > 1 else 0.5)
            y = CURVE_H - CURVE_H * min(max(float(v) / top, 0.0), 1.0) if top > 0 else CURVE_H
            pts.append(f"{x:.1f},{y:.1f}")
        dots = "".join(f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2" fill="{color}"/>' for p in pts)
        return f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{" ".join(pts)}"/>' + (
            dots if n <= 20 else ""
        )

    top = max(losses) if losses else 1.0
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{CURVE_W}" height="{CURVE_H}" '
        f'viewBox="0 0 {CURVE_W} {CURVE_H}" id="train-curve-svg">'
        f'<rect width="{CURVE_W}" height="{CURVE_H}" fill="none" stroke="#555"/>'
        f"{polyline(losses, top, '#ffb300')}{polyline(dices, 1.0, '#66bb6a')}</svg>"
    )


class TrainingPanel:
    """State, actions and the watcher task of the page's training section; ``app`` is the WeakAnnotateWebApp."""

    def __init__(self, app: Any, data_dir: str | Path | None) -> None:
        self.app = app
        self.data_dir = data_dir
        self.job: Any = None
        self.model_path: Path | None = None
        self._watcher: asyncio.Task | None = None
        self._losses: list[float] = []
        self._dices: list[float] = []
        s = app.state
        s.train_methods = METHODS
        s.train_method = METHODS[0]
        s.train_epochs = 5
        s.train_cases = 2
        s.train_state = "idle"
        s.train_running = False
        s.train_progress = 0
        s.train_text = ""
        s.train_curve = curve_svg([], [])
        s.train_model = ""
        s.train_error = ""
        s.train_busy = False

    @property
    def state(self) -> Any:
        return self.app.state

    @property
    def root(self) -> Path:
        return self.app.workspace.root / "training"

    def _inside(self, *parts: str) -> Path:
        path = self.root.joinpath(*(safe_name(p) for p in parts)).resolve()
        if not path.is_relative_to(self.app.workspace.root):
            raise InputError(f"Refusing to use {path}: training files are kept inside the work folder.")
        return path

    # --- the settings ---

    def _epochs(self) -> int:
        try:
            epochs = int(float(self.state.train_epochs))
        except (TypeError, ValueError):
            raise InputError(f"Epochs: expected a whole number, got {self.state.train_epochs!r}.") from None
        if not 1 <= epochs <= MAX_EPOCHS:
            raise InputError(f"Epochs: must be 1..{MAX_EPOCHS}, got {epochs}.")
        return epochs

    def case_ids(self) -> list[str]:
        """The open case, then other catalogue cases of the same modality (sorted), ``train_cases`` in all."""
        case = self.app.case
        try:
            n = int(float(self.state.train_cases))
        except (TypeError, ValueError):
            n = 2
        n = min(max(n, 2), MAX_CASES)
        others = sorted(c.id for c in self.app.cases.values() if c.modality == case.modality and c.id != case.id)
        if not others:
            raise InputError(f"No other {case.modality} case in the catalogue: a job needs at least 2 cases.")
        return [case.id, *others[: n - 1]]

    def _dataset(self, ids: list[str]) -> Path:
        """``training/datasets/<ids>``: made once with simulated extreme points (worker thread), then reused."""
        from WeakAnnotateLib.data.dataset import MANIFEST, create_from_cases

        folder = self._inside("datasets", "-".join(ids))
        if not (folder / MANIFEST).is_file():
            create_from_cases(folder, ids, data_dir=self.data_dir)
        return folder

    # --- actions ---

    async def start(self) -> None:
        from WeakAnnotateLib.jobs.runner import TrainingJob

        if self.app.case is None or self.state.train_running or self.state.train_busy:
            return  # (a cancelled worker may still be exiting: that does not block a new job in a new folder)
        self._set(train_error="", train_busy=True, train_text="Building the dataset…", train_progress=0)
        await asyncio.sleep(0.05)
        try:
            method = self.state.train_method
            if method not in METHODS:
                raise InputError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
            epochs = self._epochs()
            ids = self.case_ids()
            dataset = await asyncio.to_thread(self._dataset, ids)
            name = f"{method}-{time.strftime('%Y%m%d-%H%M%S')}"
            output = self._inside("jobs", name)
            n = 1
            while output.exists():
                n += 1
                output = self._inside("jobs", f"{name}-{n}")
            spec = {
                "dataset": str(dataset),
                "output": str(output),
                "method": method,
                "epochs": epochs,
                "validation_cases": [ids[-1]],
                **SMALL_SPEC,
            }
            spec_path = TrainingJob.write_spec(spec, output.with_suffix(".json"))
            job = TrainingJob(spec_path, env=_worker_env())
            job.start()  # validates first: a bad spec is an InputError naming the field
        except InputError as e:
            self._set(train_error=str(e), train_busy=False, train_text="")
            return
        self.job = job
        self._losses, self._dices = [], []
        self._set(
            train_state="running",
            train_running=True,
            train_busy=False,
            train_curve=curve_svg([], []),
            train_text=f"Started {output.name} on {len(ids)} cases ({', '.join(ids)}); validation: {ids[-1]}.",
        )
        self._watcher = asyncio.ensure_future(self._watch(job))

    def cancel(self) -> None:
        """SIGTERM to the worker (it stops after its current step); the watcher shows "cancelled"."""
        if self.job is not None and self.job.running:
            self.job.cancel()
            self._set(train_text="Cancelling…")

    async def _watch(self, job: Any) -> None:
        """Poll the job every POLL_S seconds; a file read per tick, never a blocking wait."""
        epochs = int(job.spec.epochs)
        try:
            while True:
                self._show(job, job.poll(), epochs)
                if job.state != "running":
                    break
                await asyncio.sleep(POLL_S)
        except Exception as e:  # a bug here must not leave the page saying "running" forever
            log.exception("training watcher")
            self._set(train_error=f"Watching the job failed: {e}")
        finally:
            self._set(train_running=False)

    def _show(self, job: Any, events: list[dict[str, Any]], epochs: int) -> None:
        text, progress = None, None
        for e in events:
            kind = e.get("event")
            if kind == "start":
                epochs = int(e.get("epochs", epochs))
                text = f"Started on {e.get('device')}: {epochs} epochs."
            elif kind == "prepare":
                text = f"Preparing crops: {e.get('index', 0) + 1} / {e.get('total')}."
            elif kind == "step":
                self._losses.append(float(e.get("loss", 0.0)))
                steps = max(int(e.get("steps", 1)), 1)
                done = int(e.get("epoch", 1)) - 1 + int(e.get("step_in_epoch", 1)) / steps
                progress = 100.0 * done / max(epochs, 1)
            elif kind == "epoch":
                epochs = int(e.get("epochs", epochs))
                if e.get("val_dice") is not None:
                    self._dices.append(float(e["val_dice"]))
                progress = 100.0 * int(e["epoch"]) / max(epochs, 1)
                dice = e.get("val_dice")
                text = f"Epoch {e['epoch']} / {epochs}: loss {float(e.get('loss', 0)):.3f}" + (
                    f", validation Dice {float(dice):.3f}" if dice is not None else ""
                )
        updates: dict[str, Any] = {"train_state": job.state, "train_running": job.state == "running"}
        if text is not None:
            updates["train_text"] = text
        if progress is not None:
            updates["train_progress"] = round(min(progress, 100.0), 1)
        if events:
            updates["train_curve"] = curve_svg(self._losses, self._dices)
        if job.state == "done":
            self.model_path = job.output
            updates.update(train_progress=100, train_model=job.output.name)
            updates["train_text"] = f"Done: model {job.output.name}. Press 'Apply model to this case'."
        elif job.state == "cancelled":
            updates["train_text"] = "Cancelled; the last checkpoint is kept in the job folder."
        elif job.state == "failed":
            updates["train_error"] = f"Training failed: {job.error}"
        self._set(**updates)

    async def apply(self) -> None:
        """Predict with the last finished model on the open case (worker thread); the mask becomes a segment."""
        from WeakAnnotateLib.core.colors import segment_color
        from WeakAnnotateLib.networks.prediction import load_model, predict_image
        from WeakAnnotateLib.scene.mrml_adapter import image_of_node, points_of_node, set_segment_mask

        app = self.app
        if app.case is None or self.model_path is None:
            return
        self._set(train_busy=True, train_error="", train_text="Applying the model…")
        await asyncio.sleep(0.05)
        try:
            t0 = time.perf_counter()
            image = image_of_node(app.volume_node)
            points, _ = points_of_node(app.points_nodes["extreme"])
            model = await asyncio.to_thread(load_model, self.model_path)
            if model.needs_points and len(points) != 6:
                raise InputError(
                    f"Model {model.name!r} needs the six extreme points of this case: place them in "
                    f"'Extreme points' mode first (got {len(points)})."
                )
            mask, _ = await asyncio.to_thread(predict_image, model, image, points if model.needs_points else None)
            name = f"model {self.model_path.name}"
            set_segment_mask(app.rt, app.segmentation_node, mask, image.geometry, name, segment_color(name))
            for view in app._slice_views():
                view.schedule_render()
            dt = time.perf_counter() - t0
            self._set(train_text=f"Segment '{name}': {int(mask.sum())} voxels in {dt:.1f} s.")
            app._report(status=f"Model applied: segment '{name}' ({int(mask.sum())} voxels).")
        except InputError as e:
            self._set(train_error=str(e), train_text="")
        finally:
            self._set(train_busy=False)

    def shutdown(self) -> None:
        """Cancel a running worker when the server stops (it runs in its own session)."""
        if self.job is not None and self.job.running:
            self.job.cancel()

    def _set(self, **values: Any) -> None:
        with self.state:
            for k, v in values.items():
                self.state[k] = v


def _worker_env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("WEAKANNOTATE_THREADS", "1")
    return env
