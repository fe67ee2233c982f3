"""The desktop helpers (WeakAnnotate/WeakAnnotateDesktop) that run without Qt: the training method's fields as the
hub panel edits them, InputError to the status line, the point-list watcher and stored points on the headless
Slicer core (a fake timer in place of Qt's), and the job poller.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from WeakAnnotateDesktop import method_options as mo
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.methods import registry
from WeakAnnotateLib.methods.base import FieldInfo


class FakeTimer:
    """start/stop/isActive of a qt.QTimer; ``fire()`` plays its timeout."""

    def __init__(self, callback=None) -> None:
        self.callback, self.active, self.starts = callback, False, 0

    def start(self) -> None:
        self.active, self.starts = True, self.starts + 1

    def stop(self) -> None:
        self.active = False

    def isActive(self) -> bool:  # noqa: N802 - Qt's name
        return self.active

    def fire(self) -> None:
        self.active = False
        self.callback()


# --- method_options (pure) ----------------------------------------------------------------------------------


def field(name: str, type_: str, default, **kw) -> FieldInfo:
    return FieldInfo(name, type_, default, kw.pop("help", ""), **kw)


def test_every_methods_defaults_make_its_section():
    for info in registry.training_methods():
        section = mo.section_values(info.fields())
        assert section == {f.name: f.default for f in info.fields()}, info.name
        if info.options is not None:
            assert info.make_options(section) == info.make_options(), info.name


def test_form_values_keep_what_fits_and_show_lists_as_text():
    fields = [
        field("rounds", "int", 3, minimum=1),
        field("beta", "float", 130.0),
        field("omega", "list[float]", [1.0, 3.0]),
        field("mode", "str", "2d", choices=("2d", "3d")),
        field("on", "bool", True),
    ]
    assert mo.form_values(fields) == {"rounds": 3, "beta": 130.0, "omega": "1.0, 3.0", "mode": "2d", "on": True}
    kept = {"rounds": "five", "beta": 2, "omega": "1, x", "mode": "4d", "on": False, "gone": 1}
    # A kept value that does not fit its widget (an older scene) falls back to the default; list text as typed.
    assert mo.form_values(fields, kept) == {"rounds": 3, "beta": 2, "omega": "1, x", "mode": "2d", "on": False}
    assert [mo.widget_kind(f) for f in fields] == ["int", "float", "text", "choice", "bool"]


def test_section_values_parse_lists_and_name_a_bad_value():
    fields = [
        field("omega", "list[float]", [1.0, 3.0]),
        field("ids", "list[str]", []),
        field("sizes", "list[int]", [8]),
        field("n", "int", 2),
        field("flag", "bool", False),
        field("mode", "str", "a", choices=("a", "b")),
    ]
    values = {"omega": " [0.5, 2 ] ", "ids": "case_1, case_2,", "sizes": "16,32", "n": 4.0, "flag": "true", "x": 1}
    assert mo.section_values(fields, values) == {
        "omega": [0.5, 2.0],
        "ids": ["case_1", "case_2"],
        "sizes": [16, 32],
        "n": 4,
        "flag": True,
        "mode": "a",
    }
    assert mo.section_values(fields, {"ids": ""})["ids"] == []
    for bad, words in (
        ({"omega": "1, x"}, r"^omega: expected numbers separated by commas, got \"1, x\""),
        ({"sizes": "16, 2.5"}, r"^sizes: expected whole numbers"),
        ({"n": "two"}, r"^n: expected a whole number"),
        ({"n": True}, r"^n: expected a whole number"),
        ({"flag": "yes"}, r"^flag: expected true or false"),
        ({"mode": "c"}, r"^mode: use one of a, b"),
    ):
        with pytest.raises(InputError, match=words):
            mo.section_values(fields, bad)


def test_store_keeps_each_methods_values_in_one_json_string():
    text = mo.write_store("", "weak_net", {"weak_net_lambda": 0.0})
    text = mo.write_store(text, "extreme_point_network", {"rounds": 2})
    text = mo.write_store(text, "weak_net", {"weak_net_lambda": 0.5})
    assert mo.read_store(text) == {"weak_net": {"weak_net_lambda": 0.5}, "extreme_point_network": {"rounds": 2}}
    assert mo.read_store("") == {} and mo.read_store("{not json") == {} and mo.read_store("[1]") == {}


def test_decimals_and_common_fields():
    assert (mo.decimals_for(1e-4), mo.decimals_for(0.5), mo.decimals_for(130.0), mo.decimals_for(0.03)) == (4, 3, 3, 3)
    assert mo.list_text([1.0, 3.0]) == "1.0, 3.0"
    shared = {t.name: mo.shares_common_fields(t) for t in registry.training_methods()}
    assert shared["extreme_point_network"] and not shared["box_patch_classifier"]


# --- status -------------------------------------------------------------------------------------------------


def test_input_errors_go_to_the_status_line_and_stop_the_block():
    from WeakAnnotateDesktop.status import showing_input_errors

    label = SimpleNamespace(text="")
    ran = []
    with showing_input_errors(label) as outcome:
        ran.append(1)
        raise InputError("dataset: choose a dataset folder first.")
    assert label.text == "dataset: choose a dataset folder first." and not outcome.ok and ran == [1]

    lines = []
    with showing_input_errors(lines.append) as outcome:
        label.text = "done"
    assert outcome.ok and lines == [] and label.text == "done"

    with pytest.raises(ZeroDivisionError), showing_input_errors(lines.append):
        1 / 0  # noqa: B018 - a bug is not the user's to fix: it is not swallowed
    assert lines == []


# --- points (headless Slicer core, a fake timer) ------------------------------------------------------------


def test_point_list_watcher_debounces_and_follows_one_list(runtime):
    import vtk
    from WeakAnnotateDesktop.points import PointListWatcher

    settled, edited = [], []
    active = {"on": True}
    timer = FakeTimer(lambda: settled.append(1))
    watcher = PointListWatcher(timer.callback, 150, edited=edited.append, active=lambda: active["on"], timer=timer)
    first = runtime.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "first")
    second = runtime.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "second")
    watcher.follow(first)
    watcher.follow(first)  # the same list again: observed once
    for z in range(3):  # a burst of placed points: one update after the last
        first.AddControlPoint(vtk.vtkVector3d(0.0, 0.0, float(z)), f"p{z}")
    assert edited == [first] * 3 and timer.starts == 3 and settled == []
    timer.fire()
    assert settled == [1]

    active["on"] = False  # auto update off: the edits are still seen, no update is scheduled
    first.RemoveNthControlPoint(0)
    assert len(edited) == 4 and timer.starts == 3

    active["on"] = True
    watcher.follow(second)
    first.AddControlPoint(vtk.vtkVector3d(1.0, 0.0, 0.0), "old list")
    assert len(edited) == 4, "the list followed before is no longer observed"
    second.AddControlPoint(vtk.vtkVector3d(1.0, 0.0, 0.0), "new list")
    assert edited[-1] is second and timer.starts == 4
    watcher.stop()
    second.AddControlPoint(vtk.vtkVector3d(2.0, 0.0, 0.0), "after stop")
    assert len(edited) == 5 and not timer.active


def test_points_kept_on_a_segment_come_back_as_a_point_list(runtime):
    from WeakAnnotateDesktop.points import points_node_from_segment
    from WeakAnnotateLib.core.geometry import Geometry
    from WeakAnnotateLib.scene.mrml_adapter import (
        add_segmentation_node,
        points_of_node,
        points_tag_value,
        set_segment_mask,
    )

    geometry = Geometry(np.eye(4), (8, 8, 8))
    node = add_segmentation_node(runtime, "seg", geometry)
    mask = np.zeros((8, 8, 8), bool)
    mask[2:5, 2:5, 2:5] = True
    segment_id = set_segment_mask(runtime, node, mask, geometry, "Object", (1.0, 0.0, 0.0))
    set_segment_mask(runtime, node, mask, geometry, "Plain", (0.0, 1.0, 0.0))
    points = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    node.GetSegmentation().GetSegment(segment_id).SetTag("Test.Points", points_tag_value(points))

    restored = points_node_from_segment(node, "Object", "Test.Points", what="test points", hint="place new ones",
                                        rt=runtime)  # fmt: skip
    assert restored.GetName() == "Object test points"
    assert np.allclose(points_of_node(restored)[0], points)
    with pytest.raises(InputError, match=r"^Segment 'Plain' has no stored test points; place new ones\.$"):
        points_node_from_segment(node, "Plain", "Test.Points", what="test points", hint="place new ones", rt=runtime)
    with pytest.raises(InputError, match="has no stored test points"):
        points_node_from_segment(node, "Missing", "Test.Points", what="test points", hint="x", rt=runtime)
    with pytest.raises(InputError, match="Select the segmentation"):
        points_node_from_segment(None, "Object", "Test.Points", what="test points", hint="x", rt=runtime)


# --- jobs ---------------------------------------------------------------------------------------------------


class FakeJob:
    """poll/state/running of a TrainingJob, playing a list of events one batch per poll."""

    def __init__(self, batches) -> None:
        self.batches, self.state, self.process_alive = list(batches), "running", True

    @property
    def running(self) -> bool:
        return self.process_alive

    def poll(self):
        events = self.batches.pop(0) if self.batches else []
        for e in events:
            if e["event"] in ("done", "failed", "cancelled"):
                self.state = e["event"]
        if not self.batches and self.state != "running":
            self.process_alive = False
        return events


def test_job_poller_passes_events_ends_jobs_and_stops_its_timer():
    from WeakAnnotateDesktop.jobs import JobPoller

    timer = FakeTimer()
    poller = JobPoller(timer=timer)
    timer.callback = poller.tick
    seen, ended, checks = [], [], []
    job = FakeJob([[{"event": "start"}], [], [{"event": "epoch"}, {"event": "done"}], []])
    poller.watch_job(job, seen.append, ended.append)
    poller.watch(lambda: checks.append(1) or len(checks) < 2)  # busy for one tick
    assert timer.active and timer.starts == 1
    poller.watch_job(job, seen.append, ended.append)  # watched again (a resumed job): still once
    assert timer.starts == 1

    for _ in range(5):
        if timer.active:
            poller.tick()
    assert [e["event"] for e in seen] == ["start", "epoch", "done"]
    assert ended == [job] and len(checks) == 2
    assert not timer.active and not poller.busy

    # A handler that starts new work while the poller ticks: the new job is kept.
    follow_up = FakeJob([[{"event": "done"}]])
    poller.watch_job(FakeJob([[{"event": "done"}]]), seen.append, lambda j: poller.watch_job(follow_up, seen.append))
    poller.tick()
    assert poller.busy and timer.active
    poller.tick()
    assert not poller.busy and not timer.active
