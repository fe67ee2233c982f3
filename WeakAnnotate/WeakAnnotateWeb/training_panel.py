"""The page's training panel: every training method of the registry, its own fields, a small dataset, and a job
to start / watch / cancel; then apply the model to the open case.

The methods, their titles and help, and each method's fields (:meth:`TrainingMethodInfo.fields`: type, default,
help, choices, lower bound) come from the method registry; the panel builds one widget per field (a number, a
checkbox, a select for choices, text for lists) with the field's help as its tooltip, and the job spec with
:func:`~WeakAnnotateLib.jobs.spec.job_document`. A field naming a finished job (``init_model``) is a choice of
the finished jobs in the work folder that its method accepts. :meth:`TrainingJob.start` checks the spec
completely; its :class:`InputError` (naming the field, or what the data lacks) is shown in the page.

Nothing here blocks the event loop for long: the dataset is built and the model applied in a worker thread
(``asyncio.to_thread``; numpy and torch release the GIL), the job runs in its own process
(:class:`~WeakAnnotateLib.jobs.runner.TrainingJob`) and is watched by an asyncio task that calls
``TrainingJob.poll`` (reads only what is new in ``progress.jsonl``) every :data:`POLL_S` seconds. Only writing
the predicted mask into the segmentation node runs in the loop (MRML is not thread-safe).

Every path is inside ``<work folder>/training/``: datasets in ``datasets/<ids>``, jobs in ``jobs/<name>``.

What the panel says is what the job does: *Epochs* are per round, so a method with rounds (the extreme-point
network trains, relabels with its predictions, and trains again) shows "200 epochs × 2 rounds = up to 400 in
all" under the field and "Round 1 / 2 · epoch 39 / 200" while it runs. A bad value is shown at its field, as
it is typed and again when Start refuses it; a job that was refused reads "not started", and "done" only once
the job has written its model.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from trame.widgets import html
from trame.widgets import vuetify3 as v3
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.jobs.runner import TrainingJob
from WeakAnnotateLib.jobs.spec import job_document
from WeakAnnotateLib.methods import registry
from WeakAnnotateLib.methods.base import FieldInfo, TrainingMethodInfo
from WeakAnnotateLib.networks.model_files import list_models
from WeakAnnotateLib.scene.mrml_adapter import image_of_node, points_of_node, set_segment_mask

from .html_text import attribute_text
from .training_data import training_dataset
from .workspace import safe_name

log = logging.getLogger(__name__)

POLL_S = 0.5
MIN_CASES, MAX_CASES = 2, 3
MAX_EPOCHS = 200
# The common fields of a worker job: small enough for 2 CPU cores (seconds an epoch on the cropped catalogue
# cases); see docs/training.md. A standalone job (box_patch_classifier) has only its own fields.
SMALL_SPEC = {
    "batch_size": 1,
    "patch_size": [32, 32, 32],
    "channels": [4, 8, 16],
    "spacing_mm": 4.0,
    "device": "cpu",
}
# A method's own field that starts smaller in the page than its descriptor's default (CPU budget).
SMALL_FIELD_DEFAULTS = {"rounds": 2}
# The spec's test hooks (docs/training.md), set through the page's state only (``train_test_hooks``).
TEST_HOOKS = {"steps_per_epoch": 0, "step_delay_s": 0.0}
# Fields the panel fills itself (Epochs, the cases it picks), so no method shows a widget for them.
PANEL_FIELDS = ("epochs", "train_cases", "validation_cases")
ROUNDS_FIELD = "rounds"  # a method's field that repeats the epochs (train → relabel → train again)
# States shown with a percentage (the others, "idle", "starting", "not started", say no progress).
STATES_WITH_PROGRESS = ("running", "done", "cancelled", "failed", "ended without a model")
# Fields that name a finished job: a choice of the work folder's finished jobs of the same annotation method.
JOB_FIELDS = ("init_model",)
LOCKED = "train_running || train_busy"
PREDICTION_MODULE = "WeakAnnotateLib.networks.prediction"  # imported when a model is applied (torch, monai)
BOX_NETWORK = "patch_cnn"  # a descriptor's network that corrects boxes (serve --box-model), not a segmenter
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


# --- the methods' fields ------------------------------------------------------------------------------------


def js_literal(value: Any) -> str:
    """A value as a JavaScript literal inside a double-quoted template attribute (strings in single quotes; the
    registry's names and choices hold no quotes)."""
    return json.dumps(value).replace('"', "'")


def shown_fields(info: TrainingMethodInfo) -> list[FieldInfo]:
    """The method's own fields that get a widget (those the panel fills itself are left out)."""
    return [f for f in info.fields() if f.name not in PANEL_FIELDS]


def field_key(method: str, name: str) -> str:
    """The trame state variable of a method's field (each method keeps its own values)."""
    return f"train_field_{method}_{name}"


def jobs_key(method: str) -> str:
    """The state variable with the choice of finished jobs for a method's job field."""
    return f"train_jobs_{method}"


def initial_value(f: FieldInfo) -> Any:
    """The widget's first value: the descriptor's default (a smaller one for the CPU where listed); a list as
    the text "a, b"."""
    value = SMALL_FIELD_DEFAULTS.get(f.name, f.default)
    if f.type.startswith("list["):
        return ", ".join(str(v) for v in value)
    return value


def _number(f: FieldInfo, raw: Any, kind: str) -> int | float:
    text = str(raw).strip()
    try:
        value = float(text)
    except ValueError:
        expected = "a whole number" if kind == "int" else "a number"
        raise InputError(f"{f.name}: expected {expected}, got {text!r}.") from None
    if kind == "int":
        if not value.is_integer():
            raise InputError(f"{f.name}: expected a whole number, got {text!r}.")
        return int(value)
    return value


def field_value(f: FieldInfo, raw: Any) -> Any:
    """What the page sent for a field, as the spec's type; an InputError names the field. (Choices and bounds
    are the spec check's: its messages name the field too.)"""
    if f.type == "bool":
        if isinstance(raw, bool):
            return raw
        raise InputError(f"{f.name}: expected true or false, got {raw!r}.")
    if f.type in ("int", "float"):
        if isinstance(raw, str) and not raw.strip():
            raise InputError(f"{f.name}: a value is needed.")
        return _number(f, raw, f.type)
    if f.type.startswith("list["):
        inner = f.type[5:-1]
        items = raw if isinstance(raw, list) else [t for t in re.split(r"[\s,\[\]]+", str(raw)) if t]
        if inner in ("int", "float"):
            return [_number(f, v, inner) for v in items]
        return [str(v) for v in items]
    return "" if raw is None else str(raw)


class TrainingPanel:
    """State, widgets, actions and the watcher task of the page's training section; ``app`` is the
    WeakAnnotateWebApp."""

    def __init__(self, app: Any, data_dir: str | Path | None) -> None:
        self.app = app
        self.data_dir = data_dir
        self.methods = {t.name: t for t in registry.training_methods()}
        self.job: Any = None
        self.model_path: Path | None = None
        self.model_method: TrainingMethodInfo | None = None  # the training method of model_path
        self._watcher: asyncio.Task | None = None
        self._losses: list[float] = []
        self._plan: tuple[int, int] = (1, 1)  # the running job's (epochs per round, rounds)
        self._dices: list[float] = []
        s = app.state
        s.train_methods = [{"title": t.title, "value": t.name} for t in self.methods.values()]
        s.train_helps = {t.name: t.help for t in self.methods.values()}
        s.train_method = next(iter(self.methods))
        s.train_epochs = 5
        s.train_cases = MIN_CASES
        s.train_test_hooks = dict(TEST_HOOKS)
        for info in self.methods.values():
            for f in shown_fields(info):
                s[field_key(info.name, f.name)] = initial_value(f)
        self.refresh_job_choices()
        s.train_field_errors = {}
        s.train_epochs_hint = ""
        s.train_state = "idle"
        s.train_running = False
        s.train_progress = 0
        s.train_text = ""
        s.train_curve = curve_svg([], [])
        s.train_model = ""
        s.train_job = ""  # the folder (in training/jobs) of the job started last
        s.train_error = ""
        s.train_busy = False
        s.change("train_epochs", "train_method")(self._check_fields)
        for info in self.methods.values():
            for f in shown_fields(info):
                s.change(field_key(info.name, f.name))(self._check_fields)
        self._check_fields()

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

    # --- the page -------------------------------------------------------------------------------------

    def build_ui(self) -> None:
        """Method, its help, Epochs and Cases, the method's own fields, the buttons, the error, the progress."""
        html.Div("Training", classes="text-subtitle-2 mb-1")
        v3.VSelect(
            label="Method",
            v_model=("train_method",),
            items=("train_methods",),
            density="compact",
            id="train-method",
            disabled=(LOCKED,),
            hide_details=True,
            title=("train_helps[train_method]",),
        )
        html.Div("{{ train_helps[train_method] }}", classes="text-caption my-1", id="train-help")
        with html.Div(classes="d-flex ga-2"):
            v3.VTextField(
                label="Epochs",
                v_model=("train_epochs",),
                type="number",
                density="compact",
                id="train-epochs",
                disabled=(LOCKED,),
                error_messages=("train_field_errors['epochs'] || []",),
                hint=("train_epochs_hint",),
                persistent_hint=True,
            )
            v3.VSelect(
                label="Cases",
                v_model=("train_cases",),
                items=(js_literal(list(range(MIN_CASES, MAX_CASES + 1))),),
                density="compact",
                id="train-cases",
                disabled=(LOCKED,),
            )
        with html.Div(id="train-fields"):
            for info in self.methods.values():
                with html.Div(v_if=(f"train_method == '{info.name}'",), id=f"train-fields-{info.name}"):
                    for f in shown_fields(info):
                        self._field_widget(info, f)
        with html.Div(classes="d-flex flex-wrap ga-2 mt-1"):
            v3.VBtn(
                "Start training",
                click=self.start,
                id="train-start",
                color="primary",
                size="small",
                disabled=("!case_id || " + LOCKED,),
            )
            v3.VBtn("Cancel", click=self.cancel, id="train-cancel", size="small", disabled=("!train_running",))
            v3.VBtn(
                "Apply model to this case",
                click=self.apply,
                id="train-apply",
                size="small",
                disabled=("!case_id || !train_model || train_busy || busy",),
            )
        # Sticky at both edges of the drawer's scrolling area: the message stays on screen however far the
        # drawer is scrolled while it is shown.
        v3.VAlert(
            "{{ train_error }}",
            v_if=("train_error",),
            type="error",
            density="compact",
            id="train-error",
            classes="my-2",
            style="position: sticky; top: 4px; bottom: 4px; z-index: 5;",
        )
        v3.VProgressLinear(
            model_value=("train_progress",),
            height=8,
            color="green",
            classes="my-2",
            id="train-progress",
            indeterminate=("train_busy",),
        )
        html.Div(
            "{{ train_state }}{{ "
            + js_literal(list(STATES_WITH_PROGRESS))
            + ".includes(train_state) ? ' · ' + train_progress + ' %' : '' }}",
            classes="text-caption",
            id="train-state",
        )
        html.Div(v_html=("train_curve",), id="train-curve", classes="my-1")
        html.Div("loss (amber), validation Dice (green)", classes="text-caption")
        html.Div("{{ train_text }}", classes="text-body-2", id="train-text")
        html.Div("job: {{ train_job }}", v_if=("train_job",), classes="text-caption", id="train-job")
        html.Div("model: {{ train_model }}", v_if=("train_model",), classes="text-caption", id="train-model")

    def _field_widget(self, info: TrainingMethodInfo, f: FieldInfo) -> None:
        """One widget for one field of the method's section, its help as the tooltip (``title``)."""
        options = {
            "label": f.name,
            "v_model": (field_key(info.name, f.name),),
            "density": "compact",
            "id": f"train-field-{f.name}",
            "disabled": (LOCKED,),
            "hide_details": "auto",
            "error_messages": (f"train_field_errors['{f.name}'] || []",),
        }
        with html.Div(title=attribute_text(f.help), classes="mb-2", id=f"train-field-{f.name}-tip"):
            if f.name in JOB_FIELDS:
                v3.VSelect(items=(jobs_key(info.name),), **options)
                html.Div(
                    "No finished job to start from in this work folder yet.",
                    v_if=(f"{jobs_key(info.name)}.length <= 1",),
                    classes="text-caption",
                )
            elif f.type == "bool":
                v3.VCheckbox(**options)
            elif f.choices:
                v3.VSelect(items=(js_literal(list(f.choices)),), **options)
            elif f.type in ("int", "float"):
                extra = {"min": f.minimum} if f.minimum is not None else {}
                v3.VTextField(type="number", step=1 if f.type == "int" else "any", **extra, **options)
            else:
                v3.VTextField(**options)

    def refresh_job_choices(self) -> None:
        """For each method with a job field: "(none)" and the finished jobs in ``training/jobs`` whose method is
        one of its annotation method's training methods (pet_box_mdice_ms: the pet_box jobs), newest first."""
        models = list_models(self.root / "jobs")
        with self.state:
            for info in self.methods.values():
                if not any(f.name in JOB_FIELDS for f in info.fields()):
                    continue
                siblings = {t.name for t in registry.method_of_training(info.name).training_methods}
                jobs = [Path(m["path"]).name for m in models if m.get("method") in siblings]
                self.state[jobs_key(info.name)] = [{"title": "(none)", "value": ""}] + [
                    {"title": name, "value": name} for name in jobs
                ]

    # --- the settings ---------------------------------------------------------------------------------

    def _epochs(self) -> int:
        try:
            epochs = int(float(self.state.train_epochs))
        except (TypeError, ValueError):
            raise InputError(f"Epochs: expected a whole number, got {self.state.train_epochs!r}.") from None
        if not 1 <= epochs <= MAX_EPOCHS:
            raise InputError(f"Epochs: must be 1 to {MAX_EPOCHS} (per round), got {epochs}.")
        return epochs

    def rounds(self, info: TrainingMethodInfo) -> int:
        """How many times the job repeats the Epochs: the method's ``rounds`` field as the page holds it (1 for
        a method without rounds, or while the field holds no valid number)."""
        f = next((f for f in shown_fields(info) if f.name == ROUNDS_FIELD), None)
        if f is None:
            return 1
        try:
            return max(int(field_value(f, self.state[field_key(info.name, f.name)])), 1)
        except InputError:
            return 1

    def epochs_hint(self, info: TrainingMethodInfo) -> str:
        """The Epochs field's line: per round and in all, for a method with rounds."""
        try:
            epochs = self._epochs()
        except InputError:
            return f"1 to {MAX_EPOCHS}"
        rounds = self.rounds(info)
        if any(f.name == ROUNDS_FIELD for f in shown_fields(info)):
            return (
                f"{epochs} epochs × {rounds} round{'s' if rounds != 1 else ''} = up to {epochs * rounds} in all "
                "(each round trains, then relabels; it stops early once the labels settle)"
            )
        return f"{epochs} epoch{'s' if epochs != 1 else ''} in all"

    def field_problems(self, info: TrainingMethodInfo) -> dict[str, str]:
        """Each field's problem as the page holds it (Epochs under ``epochs``): the typing, the bounds and the
        choices of the method's descriptor. Empty when every field is fine."""
        problems: dict[str, str] = {}
        try:
            self._epochs()
        except InputError as e:
            problems["epochs"] = str(e)
        for f in shown_fields(info):
            try:
                value = field_value(f, self.state[field_key(info.name, f.name)])
                if f.minimum is not None and isinstance(value, (int, float)) and value < f.minimum:
                    raise InputError(f"{f.name}: must be ≥ {f.minimum:g}, got {value}.")
                if f.choices and value not in f.choices and f.name not in JOB_FIELDS:
                    raise InputError(f"{f.name}: use one of {', '.join(map(str, f.choices))}, got {value!r}.")
            except InputError as e:
                problems[f.name] = str(e)
        return problems

    def _check_fields(self, **_: Any) -> None:
        """Shown at the field as it is typed (the state of the method that is chosen)."""
        info = self.methods.get(self.state.train_method)
        if info is None:
            return
        self._set(train_field_errors=self.field_problems(info), train_epochs_hint=self.epochs_hint(info))

    def case_ids(self) -> list[str]:
        """The open case, then other catalogue cases of the same modality (sorted), ``train_cases`` in all."""
        case = self.app.case
        try:
            n = int(float(self.state.train_cases))
        except (TypeError, ValueError):
            n = MIN_CASES
        n = min(max(n, MIN_CASES), MAX_CASES)
        case.reference_mask("Training on the open case")  # an image opened from the folder has none
        others = sorted(
            c.id
            for c in self.app.cases.values()
            if c.modality == case.modality and c.id != case.id and c.mask is not None
        )
        if not others:
            raise InputError(
                f"No other {case.modality} case with a reference mask in the catalogue: a job needs at least 2 cases."
            )
        return [case.id, *others[: n - 1]]

    def section(self, info: TrainingMethodInfo) -> dict[str, Any]:
        """The method's own fields as the page holds them, typed; a job field's name becomes its folder."""
        values = {}
        for f in shown_fields(info):
            value = field_value(f, self.state[field_key(info.name, f.name)])
            if f.name in JOB_FIELDS and value:
                value = str(self._inside("jobs", value))
            values[f.name] = value
        return values

    def spec_document(self, info: TrainingMethodInfo, dataset: Path, output: Path, ids: list[str]) -> dict[str, Any]:
        """The job spec: a worker job gets the small common fields, the validation case and the test hooks; a
        standalone job (its own flat spec) only the dataset, the output and the Epochs when it has them."""
        epochs = self._epochs()
        section = self.section(info)
        common: dict[str, Any] = {"dataset": str(dataset), "output": str(output)}
        if info.standalone:
            if any(f.name == "epochs" for f in info.fields()):
                section["epochs"] = epochs
        else:
            hooks = self.state.train_test_hooks or {}
            common.update(epochs=epochs, validation_cases=[ids[-1]], **SMALL_SPEC)
            common.update({k: hooks[k] for k in TEST_HOOKS if k in hooks})
        return job_document(info.name, common, section)

    # --- actions --------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.app.case is None or self.state.train_running or self.state.train_busy:
            return  # (a cancelled worker may still be exiting: that does not block a new job in a new folder)
        self._set(
            train_error="", train_busy=True, train_text="Checking the settings…", train_progress=0,
            train_state="starting",
        )  # fmt: skip
        await asyncio.sleep(0.05)
        spec_path: Path | None = None
        info: TrainingMethodInfo | None = None
        try:
            info = registry.training_method(self.state.train_method)
            problems = self.field_problems(info)  # a bad field is refused, at the field, before anything is built
            if problems:
                self._set(train_field_errors=problems)
                raise InputError(next(iter(problems.values())))
            ids = self.case_ids()
            self._set(train_text="Building the dataset…")
            dataset = await asyncio.to_thread(training_dataset, self._inside("datasets", "-".join(ids)), ids,
                                              self.data_dir)  # fmt: skip
            name = f"{info.name}-{time.strftime('%Y%m%d-%H%M%S')}"
            output = self._inside("jobs", name)
            n = 1
            while output.exists() or output.with_suffix(".json").exists():
                n += 1
                output = self._inside("jobs", f"{name}-{n}")
            spec_path = TrainingJob.write_spec(
                self.spec_document(info, dataset, output, ids), output.with_suffix(".json")
            )
            job = TrainingJob(spec_path, env=_worker_env())
            job.start()  # validates first: a bad spec is an InputError naming the field or what the data lacks
        except InputError as e:
            if spec_path is not None:
                spec_path.unlink(missing_ok=True)  # nothing started: no job to keep a record of
            message = str(e)
            field = self._field_of(info, message)
            errors = dict(self.state.train_field_errors or {})
            if field is not None:
                errors[field] = message
            self._set(
                train_error=message,  # in the alert that stays on screen, and at the field when it names one
                train_field_errors=errors,
                train_busy=False,
                train_text="",
                train_state="not started",
                train_progress=0,
            )
            return
        self.job = job
        self._losses, self._dices = [], []
        validation = "" if info.standalone else f"; validation: {ids[-1]}"
        self._set(
            train_state="running",
            train_running=True,
            train_job=output.name,
            train_busy=False,
            train_curve=curve_svg([], []),
            train_text=f"Started {output.name} ({info.title}) on {len(ids)} cases ({', '.join(ids)}){validation}.",
        )
        self._watcher = asyncio.ensure_future(self._watch(job))

    def _field_of(self, info: TrainingMethodInfo | None, message: str) -> str | None:
        """The field an error message names ("rounds: must be ≥ 1 …", "Epochs: …"), if the page shows it."""
        head = message.split(":", 1)[0].strip()
        if head.lower() == "epochs":
            return "epochs"
        name = head.rsplit(".", 1)[-1]  # a spec check may name "section.field"
        if info is not None and any(f.name == name for f in shown_fields(info)):
            return name
        return None

    def cancel(self) -> None:
        """SIGTERM to the worker (it stops after its current step); the watcher shows "cancelled"."""
        if self.job is not None and self.job.running:
            self.job.cancel()
            self._set(train_text="Cancelling…")

    async def _watch(self, job: Any) -> None:
        """Poll the job every POLL_S seconds; a file read per tick, never a blocking wait."""
        per_round = int(job.spec.epochs)
        info = registry.training_method(job.spec.method)
        rounds = self.rounds(info) if any(f.name == ROUNDS_FIELD for f in shown_fields(info)) else 1
        self._plan = (per_round, rounds)
        try:
            while True:
                self._show(job, job.poll(), per_round * rounds)
                if job.state != "running":
                    break
                await asyncio.sleep(POLL_S)
        except Exception as e:  # a bug here must not leave the page saying "running" forever
            log.exception("training watcher")
            self._set(train_error=f"Watching the job failed: {e}")
        finally:
            if job is self.job:
                self._set(train_running=False)

    def _show(self, job: Any, events: list[dict[str, Any]], epochs: int) -> None:
        if job is not self.job:  # a previous job's last poll, landing after the next job started: not shown
            return
        text, progress = None, None
        for e in events:
            kind = e.get("event")
            if kind == "start":
                epochs = int(e.get("epochs", epochs))
                where = f" on {e['device']}" if e.get("device") else ""
                text = f"Started{where}: {self._plan_text(epochs)}."
            elif kind == "prepare":
                text = f"Preparing crops: {e.get('index', 1)} / {e.get('total')}."
            elif kind == "step":
                self._losses.append(float(e.get("loss", 0.0)))
                steps = max(int(e.get("steps", 1)), 1)
                done = int(e.get("epoch", 1)) - 1 + int(e.get("step_in_epoch", 1)) / steps
                progress = 100.0 * done / max(epochs, 1)
            elif kind == "epoch":
                epochs = int(e.get("epochs", epochs))
                if e.get("val_dice") is not None:
                    self._dices.append(float(e["val_dice"]))
                elif "step" not in e:  # a job without step lines (box_patch_classifier): the epoch's loss
                    self._losses.append(float(e.get("loss", 0.0)))
                progress = 100.0 * int(e["epoch"]) / max(epochs, 1)
                dice = e.get("val_dice")
                loss = e.get("loss")
                text = (
                    f"{self._epoch_text(int(e['epoch']), epochs, e.get('round'))}: loss "
                    + (f"{float(loss):.3f}" if loss is not None else "–")
                    + (f", validation Dice {float(dice):.3f}" if dice is not None else "")
                )
        updates: dict[str, Any] = {"train_state": job.state, "train_running": job.state == "running"}
        if text is not None:
            updates["train_text"] = text
        if progress is not None:
            updates["train_progress"] = round(min(progress, 100.0), 1)
        if events:
            updates["train_curve"] = curve_svg(self._losses, self._dices)
        if job.state == "done" and not (job.output / "model.json").is_file():
            # the worker ended without an error but wrote no model: not "done" (nothing to apply)
            updates.update(train_state="ended without a model", train_running=False)
            updates["train_error"] = f"Training ended without writing a model in {job.output.name}. {job.log_tail()}"
        elif job.state == "done":
            self.model_path = job.output
            self.model_method = registry.training_method(job.spec.method)
            updates.update(train_progress=100, train_model=job.output.name)
            updates["train_text"] = f"Done: model {job.output.name}. Press 'Apply model to this case'."
            self.refresh_job_choices()
        elif job.state == "cancelled":
            updates["train_text"] = "Cancelled; the last checkpoint is kept in the job folder."
        elif job.state == "failed":
            updates["train_error"] = f"Training failed: {job.error}"
        self._set(**updates)

    def _plan_text(self, total: int) -> str:
        per_round, rounds = getattr(self, "_plan", (total, 1))
        if rounds > 1:
            return f"{per_round} epochs × {rounds} rounds (up to {total} epochs in all)"
        return f"{total} epochs"

    def _epoch_text(self, epoch: int, total: int, round_number: Any) -> str:
        """ "Epoch 39 / 200", or with rounds "Round 1 / 2 · epoch 39 / 200 (39 of 400 in all)"."""
        per_round, rounds = getattr(self, "_plan", (total, 1))
        if rounds > 1 and per_round > 0:
            r = int(round_number) if round_number is not None else (epoch - 1) // per_round + 1
            in_round = epoch - (r - 1) * per_round
            if 1 <= in_round <= per_round:
                return f"Round {r} / {rounds} · epoch {in_round} / {per_round} ({epoch} of {total} in all)"
            return f"Round {r} / {rounds} · epoch {epoch} of {total} in all"
        return f"Epoch {epoch} / {total}"

    async def apply(self) -> None:
        """Predict with the last finished model on the open case (worker thread); the mask becomes a segment."""
        app = self.app
        if app.case is None or self.model_path is None:
            return
        self._set(train_busy=True, train_error="", train_text="Applying the model…")
        await asyncio.sleep(0.05)
        try:
            if self.model_method is not None and self.model_method.network == BOX_NETWORK:
                raise InputError(
                    f"A {self.model_method.title} model tightens boxes, it does not segment: start the server "
                    f"with --box-model {self.model_path} and use 'Correct boxes' in box mode."
                )
            t0 = time.perf_counter()
            # Why imported here, in a worker thread: prediction loads torch and monai (seconds); the page must
            # neither start with them nor freeze while they load.
            prediction = await asyncio.to_thread(importlib.import_module, PREDICTION_MODULE)
            image = image_of_node(app.volume_node)
            # the points channel is the six extreme points: the mode of the annotation method that reads them
            points_mode = next((m for m in app.modes.values() if m.method.annotation == "extreme_points"), None)
            node = points_mode.points_node if points_mode is not None else None
            points = points_of_node(node)[0] if node is not None else []
            model = await asyncio.to_thread(prediction.load_model, self.model_path)
            if model.needs_points and len(points) != 6:
                where = f"in '{points_mode.title}' mode " if points_mode is not None else ""
                raise InputError(
                    f"Model {model.name!r} needs the six extreme points of this case: place them {where}first "
                    f"(got {len(points)})."
                )
            mask, _ = await asyncio.to_thread(
                prediction.predict_image, model, image, points if model.needs_points else None
            )
            # a new segment each time (as Segment / Fit again): the page adopts it as one undoable action
            name = app.segments.result_name(f"model {self.model_path.name}")
            set_segment_mask(app.rt, app.segmentation_node, mask, image.geometry, name, app.segments.new_color(name))
            app.render_views()
            dt = time.perf_counter() - t0
            self._set(train_text=f"Segment '{name}': {int(mask.sum())} voxels in {dt:.1f} s.")
            app.report(status=f"Model applied: segment '{name}' ({int(mask.sum())} voxels).")
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
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("WEAKANNOTATE_THREADS", "1")
    return env
