"""The page's training panel with every training method of the registry, in headless Chromium.

One server (``ibsi_STS_001_PET`` open, as ``test_web_app.py``'s) and one page for the whole module. For each
training method, in registry order, the test chooses it in the *Method* select (by the descriptor's title),
sets the Epochs and a few of the method's own fields through their widgets, starts a job on the open case and
the next PET case(s), sees it running (progress from its step lines), cancels it, and checks the page says
"cancelled", the job folder's ``progress.jsonl`` ends in a "cancelled" line, and the job's spec file names the
method and holds the values the page sent. The spec's test hooks (``steps_per_epoch``, ``step_delay_s``, set in
the page's ``train_test_hooks`` state) keep each job alive until it is cancelled.

Messages from the logic are checked where a method needs more than the page gives: box_patch_classifier with
2 cases (it needs 3 fully labelled volumes), pet_box_mdice_ms without a finished pet_box_dice job (the exact
requirement message of its descriptor's check). pet_box_mdice_ms then really starts from a pet_box_dice job of
1 epoch × 1 step trained here.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_web_app import CASE_ID, _browser_page, _serve, _state, _wait_state, browser, browser_needed
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.methods import registry
from WeakAnnotateLib.methods.base import FieldInfo
from WeakAnnotateLib.methods.pet_boxes.descriptor import PetBoxOptions, check_pet_box
from WeakAnnotateWeb.modes import MODE_CLASSES
from WeakAnnotateWeb.training_panel import SMALL_SPEC, field_value, initial_value, shown_fields

__all__ = ["browser"]  # the module-scoped Chromium fixture of test_web_app, used here too

VIEWPORT_H = 760  # test_web_app's page viewport
# Each job: this many steps in epoch 1, this long each, so that it is still running when the test cancels it.
HOOKS = {"steps_per_epoch": 50, "step_delay_s": 0.2}
EPOCHS = 40
BOX_EPOCHS = 200  # box_patch_classifier has no step hooks: enough epochs to be cancelled mid-run
# What the test types into each method's own widgets (text / number: a string; checkbox: a bool; select: the
# item's title) and what the spec file must then hold.
SETTINGS: dict[str, dict[str, tuple[Any, Any]]] = {
    "extreme_point_network": {"rounds": ("1", 1), "sigma_mm": ("2.5", 2.5), "random_walker": (False, False)},
    "weak_net": {"weak_net_lambda": ("0.001", 0.001), "weak_net_distance_mm": ("3", 3.0)},
    "box_patch_classifier": {"width": ("4", 4), "axis": ("2", 2), "coords": (False, False)},
    "box_prior": {"tightness": ("2d+3d", "2d+3d"), "box_margin_vox": ("1", 1)},
    # (pet_box_mdice_ms starts from the pet_box_dice model: the same input normalisation, suv_zscore, for both)
    "pet_box_dice": {"box_margin_mm": ("10", 10.0), "ms_omega": ("1, 2", [1.0, 2.0])},
    "pet_box_mdice_ms": {"mdice_weight": ("5", 5.0)},
    "pet_box_full_supervision": {"mdice_alpha": ("0.2", 0.2), "suv_zscore": (True, True)},
    "full_supervision": {},
}


# --- without a browser ----------------------------------------------------------------------------------


def test_every_web_mode_has_a_page_mode() -> None:
    """The page's modes are the registry's annotation methods with a web_mode; each has a registered Mode."""
    with_web = [m.name for m in registry.annotation_methods() if m.web_mode]
    assert with_web == ["extreme_points", "surface_template", "box_correction"]
    assert set(MODE_CLASSES) == set(with_web)


def test_settings_cover_every_training_method() -> None:
    assert list(SETTINGS) == list(registry.training_method_names())
    for name, settings in SETTINGS.items():
        assert set(settings) <= {f.name for f in shown_fields(registry.training_method(name))}, name


def test_field_values_are_typed_and_name_the_field() -> None:
    f = FieldInfo("rounds", "int", 3, "help")
    assert field_value(f, "2") == 2 and field_value(f, 4) == 4 and field_value(f, "3.0") == 3
    with pytest.raises(InputError, match=r"^rounds: expected a whole number, got '2.5'\.$"):
        field_value(f, "2.5")
    with pytest.raises(InputError, match=r"^rounds: a value is needed\.$"):
        field_value(f, "  ")
    g = FieldInfo("ms_omega", "list[float]", [1.0, 3.0], "help")
    assert initial_value(g) == "1.0, 3.0" and field_value(g, initial_value(g)) == [1.0, 3.0]
    assert field_value(g, "[1, 2.5]") == [1.0, 2.5]
    with pytest.raises(InputError, match=r"^ms_omega: expected a number, got 'x'\.$"):
        field_value(g, "1, x")
    b = FieldInfo("suv_zscore", "bool", False, "help")
    assert field_value(b, True) is True
    with pytest.raises(InputError, match="suv_zscore: expected true or false"):
        field_value(b, "yes")
    # the CPU default of the page, not the descriptor's
    rounds = next(f for f in shown_fields(registry.training_method("extreme_point_network")) if f.name == "rounds")
    assert rounds.default == 3 and initial_value(rounds) == 2


# --- in the browser ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with _serve(data_dir, tmp_path_factory.mktemp("web_training"), CASE_ID) as running:
        yield running


@pytest.fixture(scope="module")
def page(browser: Any, server: dict[str, Any]) -> Iterator[Any]:
    with _browser_page(browser, server["url"]) as pg:
        pg.evaluate("(h) => window.trame.state.set('train_test_hooks', h)", HOOKS)
        _wait_state(pg, "train_test_hooks", lambda v: v == HOOKS)
        yield pg


def _choose(page: Any, selector: str, title: str) -> None:
    """Open a select and click the item with this title (the select's text intercepts a plain click)."""
    page.locator(selector).click(force=True)
    exact = re.compile(rf"^\s*{re.escape(str(title))}\s*$")  # "Full supervision" ≠ "PET boxes: full supervision"
    page.locator(".v-overlay-container .v-list-item").filter(has_text=exact).click()
    page.wait_for_selector(".v-overlay-container .v-list-item", state="detached")


def _set_field(page: Any, method: str, name: str, value: Any) -> None:
    """Type or click a value into a method's field widget."""
    f = next(f for f in shown_fields(registry.training_method(method)) if f.name == name)
    selector = f"#train-field-{name}"
    if f.type == "bool":
        page.locator(selector).set_checked(value)
    elif f.choices or name == "init_model":
        _choose(page, selector, value)
    else:
        page.fill(selector, value)


def _in_viewport(page: Any, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= VIEWPORT_H


def _start(page: Any) -> None:
    page.wait_for_function("() => !document.querySelector('#train-start').disabled")
    page.click("#train-start")


def _start_refused(page: Any) -> str:
    """Start; the page shows the logic's message on screen (not scrolled away); nothing runs."""
    _start(page)
    page.wait_for_selector("#train-error")
    assert _in_viewport(page, "#train-error")
    _wait_state(page, "train_busy", lambda v: not v)
    assert not _state(page, "train_running")
    return page.locator("#train-error").inner_text().strip()


def _run_and_cancel(page: Any, jobs: Path, method: str) -> dict[str, Any]:
    """Start, see it running (steps arrive), cancel, see "cancelled"; returns the job's spec document."""
    before = _state(page, "train_job")
    page.evaluate("() => window.trame.state.set('train_error', '')")  # a refusal before: not this start's answer
    _wait_state(page, "train_error", lambda v: not v)
    _start(page)
    page.wait_for_function(  # started, or refused with a message
        "(b) => { const s = window.trame.state; return (s.get('train_job') && s.get('train_job') != b) "
        "|| s.get('train_error'); }",
        arg=before,
        timeout=60_000,
    )
    assert not _state(page, "train_error"), _state(page, "train_error")
    job = _state(page, "train_job")
    assert _state(page, "train_state") == "running" and "running" in page.locator("#train-state").inner_text()
    title = registry.training_method(method).title
    assert f"Started {job} ({title}) on " in page.locator("#train-text").inner_text()
    page.wait_for_function(  # its first step (or epoch) was seen, or it ended
        "() => window.trame.state.get('train_progress') > 0 || window.trame.state.get('train_state') != 'running'",
        timeout=90_000,
    )
    assert _state(page, "train_state") == "running", _state(page, "train_error")
    page.click("#train-cancel")
    page.wait_for_function(
        "() => document.querySelector('#train-state').innerText.includes('cancelled')", timeout=60_000
    )
    _wait_state(page, "train_running", lambda v: not v)
    assert "Cancelled" in page.locator("#train-text").inner_text()
    lines = (jobs / job / "progress.jsonl").read_text(encoding="utf-8").strip().splitlines()
    assert json.loads(lines[-1])["event"] == "cancelled", lines[-3:]
    assert not (jobs / job / "model.json").exists()
    return json.loads((jobs / f"{job}.json").read_text(encoding="utf-8"))


@browser_needed
def test_methods_offered_with_their_fields(page: Any) -> None:
    """Every training method by its descriptor's title; each shows its own fields, help as the tooltip,
    the descriptor's defaults (the page's smaller CPU ones where it has them)."""
    infos = registry.training_methods()
    page.locator("#train-method").click(force=True)
    titles = page.locator(".v-overlay-container .v-list-item").all_inner_texts()
    page.keyboard.press("Escape")
    assert [t.strip() for t in titles] == [t.title for t in infos]
    for info in infos:
        page.evaluate("(m) => window.trame.state.set('train_method', m)", info.name)
        page.wait_for_selector(f"#train-fields-{info.name}", state="attached")
        assert page.locator("#train-help").inner_text().strip() == info.help
        shown = page.eval_on_selector_all(
            f"#train-fields-{info.name} input[id^='train-field-']", "es => es.map(e => e.id)"
        )
        assert shown == [f"train-field-{f.name}" for f in shown_fields(info)], info.name
        for f in shown_fields(info):
            assert page.locator(f"#train-field-{f.name}-tip").get_attribute("title") == f.help
            assert _state(page, f"train_field_{info.name}_{f.name}") == initial_value(f)
            if f.type in ("int", "float") and not f.choices:
                assert float(page.locator(f"#train-field-{f.name}").input_value()) == float(initial_value(f))
    assert shown_fields(registry.training_method("full_supervision")) == []


@browser_needed
@pytest.mark.parametrize("method", registry.training_method_names())
def test_each_method_starts_runs_and_cancels(page: Any, server: dict[str, Any], method: str) -> None:
    jobs: Path = server["work"] / "training" / "jobs"
    info = registry.training_method(method)
    t0 = time.perf_counter()
    _choose(page, "#train-method", info.title)
    _wait_state(page, "train_method", lambda v: v == method)
    epochs = BOX_EPOCHS if info.standalone else EPOCHS
    page.fill("#train-epochs", str(epochs))
    for name, (typed, _) in SETTINGS[method].items():
        _set_field(page, method, name, typed)
    _choose(page, "#train-cases", "2")

    if method == "box_patch_classifier":  # 2 cases: the logic says why not, then 3
        message = _start_refused(page)
        assert message.startswith("dataset: 2 case(s) with a reference mask; box correction needs at least 3 ")
        _choose(page, "#train-cases", "3")
    if method == "pet_box_mdice_ms":  # no finished pet_box_dice job yet (the one above was cancelled)
        assert _state(page, "train_jobs_pet_box_mdice_ms") == [{"title": "(none)", "value": ""}]
        with pytest.raises(InputError) as requirement:
            check_pet_box(SimpleNamespace(method=method, options=PetBoxOptions()))
        assert _start_refused(page) == str(requirement.value)  # on screen, and at the field it names
        assert _field_message(page, "#train-field-init_model", "init_model:") == str(requirement.value)
        assert _state(page, "train_state") == "not started"
        assert not list(jobs.glob("pet_box_mdice_ms*"))  # a refused spec is not kept
        _finish_pet_box_dice(page, jobs)
        _choose(page, "#train-method", info.title)
        _wait_state(page, "train_method", lambda v: v == method)
        page.fill("#train-epochs", str(epochs))

    expected = {name: value for name, (_, value) in SETTINGS[method].items()}
    if method == "pet_box_mdice_ms":
        dice_job = _state(page, "train_jobs_pet_box_mdice_ms")[1]["value"]
        _set_field(page, method, "init_model", dice_job)
        expected["init_model"] = str(jobs / dice_job)
    spec = _run_and_cancel(page, jobs, method)

    assert spec["method"] == method
    ids = [CASE_ID, "ibsi_STS_002_PET", "ibsi_STS_003_PET"][: 3 if method == "box_patch_classifier" else 2]
    assert Path(spec["dataset"]).name == "-".join(ids)
    assert Path(spec["dataset"]).is_relative_to(server["work"]) and Path(spec["output"]).is_relative_to(jobs)
    assert spec["epochs"] == epochs
    if info.standalone:  # its own flat spec: the dataset, the output and its own fields
        section = spec
        assert "steps_per_epoch" not in spec and "validation_cases" not in spec
    else:
        section = spec.get(method, {})
        assert {k: spec[k] for k in SMALL_SPEC} == SMALL_SPEC
        assert {k: spec[k] for k in HOOKS} == HOOKS and spec["validation_cases"] == [ids[-1]]
    for f in shown_fields(info):  # every field the page shows is sent: the typed ones, the rest as shown
        want = expected.get(f.name, field_value(f, initial_value(f)))
        assert section[f.name] == want, (f.name, section[f.name], want)
    print(f"{method}: {time.perf_counter() - t0:.1f} s")


def _finish_pet_box_dice(page: Any, jobs: Path) -> None:
    """A pet_box_dice job of 1 epoch × 1 step that finishes: then it is offered as pet_box_mdice_ms's init_model."""
    page.evaluate("() => window.trame.state.set('train_test_hooks', {steps_per_epoch: 1, step_delay_s: 0})")
    _wait_state(page, "train_test_hooks", lambda v: v["steps_per_epoch"] == 1)
    _choose(page, "#train-method", registry.training_method("pet_box_dice").title)
    _wait_state(page, "train_method", lambda v: v == "pet_box_dice")
    page.fill("#train-epochs", "1")
    _start(page)
    _wait_state(page, "train_state", lambda v: v == "done", timeout_s=120)
    job = _state(page, "train_job")
    assert (jobs / job / "model.json").is_file()
    choices = _state(page, "train_jobs_pet_box_mdice_ms")
    assert [c["value"] for c in choices] == ["", job]
    page.evaluate("(h) => window.trame.state.set('train_test_hooks', h)", HOOKS)
    _wait_state(page, "train_test_hooks", lambda v: v == HOOKS)


# --- what the panel says is what the job does -------------------------------------------------------------


def _field_message(page: Any, selector: str, expected: str) -> str:
    """Wait until the message Vuetify shows under a field (its error, else its hint: the element
    ``<id>-messages``) is one line starting with ``expected`` (the old one fades out first); returns it."""
    page.wait_for_function(
        "([sel, want]) => { const e = document.querySelector(sel + '-messages'); if (!e) return false; "
        "const t = e.innerText.trim(); return t.startsWith(want) && !t.includes('\\n'); }",
        arg=[selector, expected],
        timeout=10_000,
    )
    return page.locator(f"{selector}-messages").inner_text().strip()


@browser_needed
def test_epochs_and_rounds_as_the_job_runs_them(page: Any, server: dict[str, Any]) -> None:
    """Extreme-point network, 2 epochs × 2 rounds: the field says so before the start, and the running job
    says "Round 1 / 2 · epoch 1 / 2 (1 of 4 in all)" (not "Epoch 1 / 4")."""
    if _state(page, "train_running"):
        page.click("#train-cancel")
        _wait_state(page, "train_running", lambda v: not v, timeout_s=60)
    page.evaluate("() => window.trame.state.set('train_test_hooks', {steps_per_epoch: 4, step_delay_s: 0.5})")
    _wait_state(page, "train_test_hooks", lambda v: v["steps_per_epoch"] == 4)
    _choose(page, "#train-method", registry.training_method("extreme_point_network").title)
    _wait_state(page, "train_method", lambda v: v == "extreme_point_network")
    page.fill("#train-epochs", "200")
    _set_field(page, "extreme_point_network", "rounds", "2")
    _wait_state(page, "train_epochs_hint", lambda v: v.startswith("200 epochs × 2 rounds = up to 400 in all"))
    _field_message(page, "#train-epochs", "200 epochs × 2 rounds = up to 400 in all")
    page.fill("#train-epochs", "2")
    _wait_state(page, "train_epochs_hint", lambda v: v.startswith("2 epochs × 2 rounds = up to 4 in all"))
    _choose(page, "#train-cases", "2")
    _start(page)
    _wait_state(page, "train_state", lambda v: v == "running", timeout_s=60)
    text = page.locator("#train-text")
    page.wait_for_function(
        "() => document.querySelector('#train-text').innerText.startsWith('Round 1 / 2 · epoch 1 / 2')",
        timeout=120_000,
    )
    assert text.inner_text().startswith("Round 1 / 2 · epoch 1 / 2 (1 of 4 in all): loss ")
    page.click("#train-cancel")
    page.wait_for_function("() => document.querySelector('#train-state').innerText.includes('cancelled')")
    page.evaluate("(h) => window.trame.state.set('train_test_hooks', h)", HOOKS)
    _wait_state(page, "train_test_hooks", lambda v: v == HOOKS)


@browser_needed
def test_bad_values_shown_at_the_field_and_never_done(page: Any, server: dict[str, Any]) -> None:
    """Epochs 300 and rounds 0: each field says why as it is typed; Start is refused at the field and the state
    reads "not started" (after a finished job it read "done · 0 %")."""
    _choose(page, "#train-method", registry.training_method("extreme_point_network").title)
    _wait_state(page, "train_method", lambda v: v == "extreme_point_network")
    page.fill("#train-epochs", "300")
    _wait_state(page, "train_field_errors", lambda v: "epochs" in v)
    assert _field_message(page, "#train-epochs", "Epochs:") == "Epochs: must be 1 to 200 (per round), got 300."
    _set_field(page, "extreme_point_network", "rounds", "0")
    _wait_state(page, "train_field_errors", lambda v: "rounds" in v)
    assert _field_message(page, "#train-field-rounds", "rounds:") == "rounds: must be ≥ 1, got 0."
    jobs_before = sorted(p.name for p in (server["work"] / "training" / "jobs").glob("*"))
    _start(page)
    _wait_state(page, "train_state", lambda v: v == "not started")
    _wait_state(page, "train_busy", lambda v: not v)
    assert page.locator("#train-state").inner_text().strip() == "not started"
    assert page.locator("#train-error").inner_text().strip() == "Epochs: must be 1 to 200 (per round), got 300."
    assert _in_viewport(page, "#train-error")  # the first problem also stays on screen
    assert _field_message(page, "#train-epochs", "Epochs:") == "Epochs: must be 1 to 200 (per round), got 300."
    assert sorted(p.name for p in (server["work"] / "training" / "jobs").glob("*")) == jobs_before
    page.fill("#train-epochs", "5")
    _set_field(page, "extreme_point_network", "rounds", "2")
    _wait_state(page, "train_field_errors", lambda v: v == {})
    _field_message(page, "#train-epochs", "5 epochs × 2 rounds")
