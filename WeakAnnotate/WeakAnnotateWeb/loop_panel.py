"""The page's annotation-loop panel: a dataset, "Next case" (the model's prediction, else the marks' pseudo-label,
as the starting segment), corrective clicks (*Add* / *Remove*), "Accept" (the mask and the effort into the
dataset), and the fine-tuning job every N accepted cases; the remaining cases as a sortable table with the
strategy's score.

Everything is :class:`WeakAnnotateLib.jobs.annotation_loop.AnnotationLoop`'s (the same as ``weakannotate loop``
and the hub panel); this module gathers the page's input and shows the answers. The loop's state is on disk in
the dataset folder: a page closed mid-case gets the same case, with its corrections so far (saved as a draft
after every click), on the next "Next case".

Datasets live in ``<work folder>/loop/<name>`` (made from catalogue cases of the open case's modality, with
simulated six clicks, by "New dataset"). Prediction and the corrections' solves run in a worker thread
(``asyncio.to_thread``); only writing the segment into the scene runs in the event loop (MRML is not
thread-safe). The clicks are stored on the segment (tag ``WeakAnnotate.CorrectiveClicks``), so clicks made on
the loop's segment with the page's own corrections count too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from trame.widgets import html
from trame.widgets import vuetify3 as v3
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.data.dataset import MANIFEST, create_from_cases
from WeakAnnotateLib.files.cases import Case
from WeakAnnotateLib.files.image_io import read_mask
from WeakAnnotateLib.jobs.annotation_loop import START_CHOICES, STRATEGIES, AnnotationLoop
from WeakAnnotateLib.methods.extreme_points.corrective import (
    CLICKS_TAG,
    Click,
    CorrectionSession,
    clicks_tag_value,
    stored_clicks,
)
from WeakAnnotateLib.scene.mrml_adapter import (
    geometry_of_node,
    image_of_node,
    remove_node,
    segment_mask,
    set_segment_mask,
)

from .corrections import MODE_BUTTONS
from .workspace import safe_name

log = logging.getLogger(__name__)

POLL_S = 1.0
NEW_CASES = 3  # cases of a new dataset: the open case and the next ones of its modality
SEGMENT_COLOR = (0.95, 0.75, 0.2)
HEADERS = [
    {"title": "#", "key": "rank"},
    {"title": "case", "key": "case"},
    {"title": "score", "key": "score"},
    {"title": "outside box", "key": "outside_box"},
    {"title": "marks off (mm)", "key": "points_off_mm"},
]
BUSY = "loop_busy || busy"


class LoopPanel:
    """State, widgets and actions of the page's loop section; ``app`` is the WeakAnnotateWebApp."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop: AnnotationLoop | None = None
        self.case_id = ""
        self.segment_id = ""
        self.session: CorrectionSession | None = None
        self.clicks: list[Click] = []
        self.node: Any = None  # the loop's click list
        self.started = 0.0
        self.prior_effort: dict[str, Any] = {}
        self._watcher: asyncio.Task | None = None
        s = app.state
        s.loop_datasets = self.dataset_names()
        s.loop_dataset = s.loop_datasets[0] if s.loop_datasets else ""
        s.loop_strategies = list(STRATEGIES)
        s.loop_strategy = "order"
        s.loop_tta = False
        s.loop_every = 5
        s.loop_starts = [{"title": f"{k}: {v}", "value": k} for k, v in START_CHOICES.items()]
        s.loop_start = "auto"
        s.loop_rows = []
        s.loop_headers = HEADERS
        s.loop_case = ""
        s.loop_source = ""
        s.loop_clicks = 0
        s.loop_correcting = ""
        s.loop_text = ""
        s.loop_warning = ""
        s.loop_error = ""
        s.loop_busy = False
        s.loop_job = ""
        s.loop_effort = ""
        s.change("loop_dataset")(self._on_dataset)
        s.change("loop_every")(self._on_every)
        s.change("loop_start")(self._on_start)
        with contextlib.suppress(InputError):  # the first dataset's own settings, not the defaults above
            settings = self._open().settings()
            s.loop_every, s.loop_start = int(settings["finetune_every"]), settings["start"]

    @property
    def state(self) -> Any:
        return self.app.state

    @property
    def root(self) -> Path:
        return self.app.workspace.root / "loop"

    def dataset_names(self) -> list[str]:
        return sorted(p.parent.name for p in self.root.glob(f"*/{MANIFEST}")) if self.root.is_dir() else []

    def _folder(self, name: Any) -> Path:
        if not isinstance(name, str) or not name:
            raise InputError("Choose a loop dataset first (or make one with 'New dataset').")
        path = (self.root / safe_name(name, "dataset name")).resolve()
        if not path.is_relative_to(self.app.workspace.root):
            raise InputError(f"Refusing to use {path}: loop datasets are kept inside the work folder.")
        return path

    # --- the page -------------------------------------------------------------------------------------

    def build_ui(self) -> LoopPanel:
        html.Div("Annotation loop", classes="text-subtitle-2 mb-1")
        with html.Div(classes="d-flex ga-2"):
            v3.VSelect(label="Dataset", v_model=("loop_dataset",), items=("loop_datasets",), density="compact",
                       id="loop-dataset", hide_details=True, disabled=(BUSY,))  # fmt: skip
            v3.VBtn("New dataset", click=self.new_dataset, id="loop-new", size="small",
                    disabled=("!case_id || " + BUSY,))  # fmt: skip
        with html.Div(classes="d-flex ga-2 mt-2"):
            v3.VSelect(label="Which case next", v_model=("loop_strategy",), items=("loop_strategies",),
                       density="compact", id="loop-strategy", hide_details=True, disabled=(BUSY,))  # fmt: skip
            v3.VTextField(label="Fine-tune every", v_model=("loop_every",), type="number", min=1, density="compact",
                          id="loop-every", hide_details=True, disabled=(BUSY,))  # fmt: skip
        v3.VSelect(label="Start from", v_model=("loop_start",), items=("loop_starts",), density="compact",
                   id="loop-start", hide_details=True, disabled=(BUSY,), classes="mt-2")  # fmt: skip
        v3.VCheckbox(label="TTA (flip) in the disagreement score", v_model=("loop_tta",), density="compact",
                     id="loop-tta", hide_details=True)  # fmt: skip
        with html.Div(classes="d-flex flex-wrap ga-2 mt-1"):
            v3.VBtn("Rank cases", click=self.rank, id="loop-rank", size="small", disabled=("!loop_dataset || " + BUSY,))
            v3.VBtn("Next case", click=self.next_case, id="loop-next", color="primary", size="small",
                    disabled=("!loop_dataset || " + BUSY,))  # fmt: skip
            for which, icon, colour, verb in MODE_BUTTONS:  # the same two modes as the page's corrections
                v3.VBtn(
                    which.capitalize(),
                    click=(self.toggle, f"['{which}']"),
                    id=f"loop-{which}",
                    size="small",
                    prepend_icon=f"mdi-{icon}",
                    color=(f"loop_correcting == '{which}' ? '{colour}' : undefined",),
                    disabled=("!loop_case || " + BUSY,),
                    title=f"Clicks in the views {verb} the loop's segment",
                )
            v3.VBtn("Accept", click=self.accept, id="loop-accept", color="green", size="small",
                    disabled=("!loop_case || " + BUSY,))  # fmt: skip
        v3.VAlert("{{ loop_error }}", v_if=("loop_error",), type="error", density="compact", id="loop-error",
                  classes="my-2")  # fmt: skip
        v3.VAlert("{{ loop_warning }}", v_if=("loop_warning",), type="warning", density="compact",
                  id="loop-warning", classes="my-2")  # fmt: skip
        html.Div("case {{ loop_case }} · start: {{ loop_source }} · clicks: {{ loop_clicks }}", v_if=("loop_case",),
                 classes="text-caption", id="loop-case")  # fmt: skip
        html.Div("{{ loop_text }}", classes="text-body-2", id="loop-text")
        html.Div("{{ loop_effort }}", v_if=("loop_effort",), classes="text-caption", id="loop-effort")
        html.Div("fine-tuning: {{ loop_job }}", v_if=("loop_job",), classes="text-caption", id="loop-job")
        v3.VDataTable(headers=("loop_headers",), items=("loop_rows",), density="compact", id="loop-table",
                      items_per_page=10, v_if=("loop_rows.length",))  # fmt: skip
        return self

    # --- settings -------------------------------------------------------------------------------------

    def _open(self) -> AnnotationLoop:
        folder = self._folder(self.state.loop_dataset)
        return AnnotationLoop(folder)

    def _on_dataset(self, loop_dataset: Any = None, **_: Any) -> None:
        self.loop = None
        try:
            loop = self._open()
        except InputError:
            return
        self._set(loop_every=int(loop.state["finetune_every"]), loop_start=loop.state["start"], loop_rows=[],
                  loop_error="")  # fmt: skip

    def _on_start(self, loop_start: Any = None, **_: Any) -> None:
        self._save_setting("start", loop_start)  # (a value not one of the choices: the loop's message)

    def _on_every(self, loop_every: Any = None, **_: Any) -> None:
        try:
            n = int(float(loop_every))
        except (TypeError, ValueError):
            self._set(loop_error=f"Fine-tune every: expected a whole number, got {loop_every!r}.")
            return
        self._save_setting("finetune_every", n)

    def _save_setting(self, key: str, value: Any) -> None:
        """A setting is the dataset's (``loop.json``): saved at once, whichever face reads it next."""
        try:
            loop = self._open()
            if value != loop.state[key]:
                loop.configure(**{key: value})
            self._set(loop_error="")
        except InputError as e:
            if self.state.loop_dataset:
                self._set(loop_error=str(e))

    # --- actions --------------------------------------------------------------------------------------

    async def new_dataset(self) -> None:
        """A dataset of the open case and the next catalogue cases of its modality (simulated six clicks)."""
        case = self.app.case
        if case is None:
            return
        await self._busy("Building the dataset…")
        try:
            same = sorted(c.id for c in self.app.cases.values() if c.modality == case.modality and c.id != case.id)
            ids = [case.id, *same[: NEW_CASES - 1]]
            name = f"{case.modality.lower()}-{len(ids)}-cases"
            folder = self._folder(name)
            if not (folder / MANIFEST).is_file():
                folder.parent.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(create_from_cases, folder, ids, data_dir=self.app.training.data_dir)
            self._set(loop_datasets=self.dataset_names(), loop_dataset=name,
                      loop_text=f"Dataset {name}: {', '.join(ids)}.")  # fmt: skip
        except InputError as e:
            self._set(loop_error=str(e), loop_text="")
        finally:
            self._set(loop_busy=False)

    async def rank(self) -> None:
        await self._busy("Ranking the remaining cases…")
        try:
            loop = self._open()
            rows = await asyncio.to_thread(loop.ranking, self.state.loop_strategy, tta=bool(self.state.loop_tta))
            self._set(loop_rows=[_table_row(r) for r in rows], loop_text=f"{len(rows)} cases left.")
        except InputError as e:
            self._set(loop_error=str(e), loop_text="")
        finally:
            self._set(loop_busy=False)

    async def next_case(self) -> None:
        """The case in progress (with its draft), else the strategy's next: opened with its starting segment."""
        await self._busy("Predicting the next case…")
        try:
            loop = self._open()
            start = await asyncio.to_thread(loop.next_case, self.state.loop_strategy, tta=bool(self.state.loop_tta))
            entry = loop.dataset.case(start.case)
            mask = await asyncio.to_thread(read_mask, start.start, what="starting segment")
            case = self.app.cases.get(entry.id) or Case(entry.id, entry.modality or "", Path(start.image),
                                                        Path(start.image), {1: "object"}, "loop")  # fmt: skip
            self._stop_correcting()
            self._remove_clicks()
            self.app.open_case(case)
            image = image_of_node(self.app.volume_node)
            name = f"loop {entry.id}"
            self.segment_id = set_segment_mask(self.app.rt, self.app.segmentation_node, mask, image.geometry, name,
                                               SEGMENT_COLOR)  # fmt: skip
            self.session = CorrectionSession(image.array, image.geometry, mask)
            self.loop, self.case_id, self.clicks = loop, entry.id, []
            self.prior_effort = start.effort
            self.started = time.monotonic()
            self.app.render_views()
            rows = loop.ranking(self.state.loop_strategy) if self.state.loop_strategy != "disagreement" else None
            updates: dict[str, Any] = {
                "loop_case": entry.id,
                "loop_source": start.source,
                "loop_clicks": int(start.effort.get("corrective", {}).get("clicks", 0)),
                "loop_warning": " ".join(start.warnings),
                "loop_effort": "",
                "loop_text": f"{'Resumed' if start.resumed else 'Opened'} {entry.id}: {start.voxels} voxels from "
                f"{start.source}. Correct with Add / Remove, then Accept.",
            }
            if rows is not None:
                updates["loop_rows"] = [_table_row(r) for r in rows]
            self._set(**updates)
            self.app.report(status=f"Loop: {entry.id} opened.")
        except InputError as e:
            self._set(loop_error=str(e), loop_text="")
        finally:
            self._set(loop_busy=False)

    def toggle(self, which: Any) -> None:
        """*Add* / *Remove* on (clicks in a view go to the loop's click list) or off."""
        if which not in ("add", "remove") or not self.case_id:
            return
        if self.state.loop_correcting == which:
            self._stop_correcting()
            return
        self.app.disable_placing()
        if self.node is None or self.app.slicer.scene.GetNodeByID(self.node.GetID()) is None:
            node = self.app.slicer.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "loop clicks")
            node.CreateDefaultDisplayNodes()
            node.SetMarkupLabelFormat("")
            node.AddObserver(node.PointPositionDefinedEvent, self._on_click)
            self.node = node
        self.app.slicer.markups_logic.place_node(self.node, persistent=True)
        self._set(loop_correcting=which, loop_text=f"Click in a view: {'object' if which == 'add' else 'not object'}.")

    def _remove_clicks(self) -> None:
        if self.node is not None:
            remove_node(self.app.slicer.scene, self.node)
            self.node = None

    def _stop_correcting(self) -> None:
        if self.state.loop_correcting:
            self.app.slicer.markups_logic.disable_place_mode()
        self._set(loop_correcting="")

    def _on_click(self, node: Any, *_: Any) -> None:
        n = node.GetNumberOfControlPoints()
        if n == 0 or node.GetNthControlPointPositionStatus(n - 1) != node.PositionDefined:
            return
        point = node.GetNthControlPointPositionWorld(n - 1)
        asyncio.ensure_future(self.correct([float(v) for v in point], self.state.loop_correcting == "add"))

    async def correct(self, point: list[float], positive: bool) -> None:
        """One corrective click: re-solve in a thread, then write the segment and its clicks; saved as a draft."""
        if self.session is None or self.loop is None:
            return
        self._set(loop_busy=True, loop_error="")
        try:
            result = await asyncio.to_thread(self.session.add, point, positive)
            segmentation = self.app.segmentation_node
            geometry = geometry_of_node(self.app.volume_node)  # (the session holds the voxels: no copy per click)
            set_segment_mask(self.app.rt, segmentation, result.mask, geometry, f"loop {self.case_id}")
            segmentation.GetSegmentation().GetSegment(self.segment_id).SetTag(
                CLICKS_TAG, clicks_tag_value(result.clicks)
            )
            self.app.render_views()
            effort = self._effort()
            await asyncio.to_thread(self.loop.save_draft, self.case_id, result.mask, effort)
            self._set(loop_clicks=effort["corrective"]["clicks"],
                      loop_text=f"{int(result.mask.sum())} voxels after {len(result.clicks)} clicks.")  # fmt: skip
        except InputError as e:
            self._set(loop_error=str(e))
        finally:
            self._set(loop_busy=False)

    def _effort(self) -> dict[str, Any]:
        """Corrective clicks on the segment (whichever tool made them) and the seconds since it was opened."""
        before = self.prior_effort.get("corrective", {})
        clicks = len(stored_clicks(self.app.segmentation_node, self.segment_id)) if self.segment_id else 0
        seconds = float(before.get("seconds", 0.0)) + time.monotonic() - self.started
        return {"corrective": {"clicks": int(before.get("clicks", 0)) + clicks, "seconds": round(seconds, 1)}}

    async def accept(self) -> None:
        """The segment as it is now, and the effort, into the dataset; a fine-tune starts every N accepted."""
        if self.loop is None or not self.case_id:
            return
        self._stop_correcting()
        await self._busy("Accepting…")
        try:
            mask = segment_mask(self.app.segmentation_node, self.segment_id, geometry_of_node(self.app.volume_node))
            effort = self._effort()
            result = await asyncio.to_thread(self.loop.accept, self.case_id, mask, effort)
            record = result["accepted"]
            e = record["effort"]
            text = (f"Accepted {self.case_id}: {e['clicks']} clicks ({e.get('corrective_clicks', 0)} corrective), "
                    f"{e['seconds']:.0f} s. {result['remaining']} cases left.")  # fmt: skip
            job = result.get("job")
            if job:
                text += f" Fine-tuning started on {len(job['cases'])} cases."
                self._set(loop_job=f"{Path(job['output']).name} running")
                self._watch()
            elif result.get("job_error"):
                self._set(loop_warning=f"No fine-tuning: {result['job_error']}")
            self.case_id, self.session, self.clicks = "", None, []
            self._remove_clicks()
            self._set(loop_case="", loop_text=text, loop_effort=json_effort(e), loop_clicks=0)
        except InputError as e:
            self._set(loop_error=str(e))
        finally:
            self._set(loop_busy=False)

    def _watch(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.ensure_future(self._poll_job())

    async def _poll_job(self) -> None:
        """The fine-tuning job's state every POLL_S seconds (a file read); a finished job is the next model."""
        try:
            while True:
                await asyncio.sleep(POLL_S)
                loop = self._open()
                job = await asyncio.to_thread(loop.poll_job)
                if not job:
                    return
                self._set(loop_job=f"{Path(job['output']).name} {job['state']}")
                if job["state"] != "running":
                    return
        except InputError as e:
            self._set(loop_error=str(e))
        except Exception as e:  # a bug here must not leave the page saying "running" forever
            log.exception("loop job watcher")
            self._set(loop_error=f"Watching the fine-tuning failed: {e}")

    async def _busy(self, text: str) -> None:
        self._set(loop_busy=True, loop_error="", loop_text=text)
        await asyncio.sleep(0.05)

    def _set(self, **values: Any) -> None:
        with self.state:
            for k, v in values.items():
                self.state[k] = v


def _table_row(row: dict[str, Any]) -> dict[str, Any]:
    return {"rank": row["rank"], "case": row["case"], "score": row.get("score"),
            "outside_box": row.get("outside_box"), "points_off_mm": row.get("points_off_mm")}  # fmt: skip


def json_effort(effort: dict[str, Any]) -> str:
    """The effort as the dataset records it, as one line."""
    return ", ".join(f"{k} {v}" for k, v in effort.items())
