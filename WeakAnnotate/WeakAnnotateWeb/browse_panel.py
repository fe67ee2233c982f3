"""The page's folder browser: the data folder's sub-folders, images and DICOM series, and nothing outside it.

The page sends a path relative to the data folder; :mod:`WeakAnnotateLib.files.data_folder` resolves it and
refuses ``..``, absolute paths and links out of the folder. Opening an image that the catalogue lists opens
that case (its modality, labels and reference); any other image becomes a case of its own, named by its path
in the folder, with its modality read from its header or guessed from its name (else "unknown"). The case is
opened through the page's case picker (``case_id``), so everything the app does on a switch (asking before
unsaved work is dropped, loading the case's saved work) happens here too.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from trame.widgets import html
from trame.widgets import vuetify3 as v3
from WeakAnnotateLib.core.errors import InputError
from WeakAnnotateLib.files.cases import CATALOGUE, find_case, image_case
from WeakAnnotateLib.files.data_folder import list_folder, resolve_inside

ICONS = {"folder": "mdi-folder", "image": "mdi-file-image", "dicom": "mdi-folder-multiple-image"}


class BrowsePanel:
    """State, widgets and actions of the folder browser; ``app`` is the WeakAnnotateWebApp."""

    def __init__(self, app: Any, root: str | Path | None) -> None:
        self.app = app
        self.root = Path(root).resolve() if root is not None else None
        s = app.state
        s.browse_available = self.root is not None
        s.browse_path = ""
        s.browse_entries = []
        s.browse_left_out = 0
        s.browse_error = ""
        if self.root is not None:
            self.show("")

    def show(self, rel: Any) -> None:
        """List a folder of the data folder (a refused path leaves the listing as it was, with the message)."""
        if self.root is None:
            return
        try:
            listing = list_folder(self.root, rel if isinstance(rel, str) else None)  # type: ignore[arg-type]
        except InputError as e:
            self._set(browse_error=str(e))
            return
        entries = [{**asdict(e), "icon": ICONS[e.kind]} for e in listing.entries]
        self._set(browse_path=listing.path, browse_entries=entries, browse_left_out=listing.left_out, browse_error="")

    def up(self) -> None:
        path = self.app.state.browse_path or ""
        self.show(path.rsplit("/", 1)[0] if "/" in path else "")

    def activate(self, rel: Any, kind: Any = None) -> None:
        """A folder: list it. An image or a DICOM series: open it as a case."""
        if self.root is None:
            return
        try:
            target = resolve_inside(self.root, rel if isinstance(rel, str) else None)  # type: ignore[arg-type]
        except InputError as e:
            self._set(browse_error=str(e))
            return
        if kind == "folder" or (target.is_dir() and kind != "dicom"):
            self.show(rel)
            return
        self.open(target)

    def case_for(self, target: Path) -> Any:
        """The catalogue's case for this image if it lists it, else a new case for the image."""
        for case in self.app.cases.values():
            if Path(case.image).resolve() == target:
                return case
        return image_case(self.root, target)

    def case_for_path(self, rel: str) -> Any:
        """``serve --case``: an image's path in the data folder (the catalogue's own message when it is not)."""
        if self.root is None:
            raise InputError(f"No case {rel!r}: no data folder.")
        try:
            target = resolve_inside(self.root, rel)
        except InputError:
            if (self.root / CATALOGUE).is_file():
                find_case(rel, self.root)  # the catalogue's message, with suggestions
            raise
        case = self.case_for(target)
        self.app.cases[case.id] = case
        self._set(case_ids=sorted(self.app.cases))
        return case

    def open(self, target: Path) -> None:
        case = self.case_for(target)
        if case.id not in self.app.cases:
            self.app.cases[case.id] = case
            self._set(case_ids=sorted(self.app.cases))
        self._set(browse_error="", case_id=case.id)  # the app's case switch does the rest

    def build_ui(self) -> None:
        """A compact list under the case picker: the current folder, Up, its entries."""
        with html.Div(v_if=("browse_available",), id="browse", classes="mb-2"):
            with html.Div(classes="d-flex align-center ga-1"):
                v3.VBtn(
                    icon="mdi-arrow-up",
                    size="x-small",
                    variant="text",
                    click=self.up,
                    disabled=("!browse_path || busy",),
                    id="browse-up",
                    title="The folder above (not above the data folder)",
                )
                html.Div(
                    "data/{{ browse_path }}",
                    classes="text-caption text-truncate",
                    id="browse-path",
                    title=("browse_path",),
                )
            with v3.VList(density="compact", max_height=180, classes="py-0", id="browse-list", bg_color="transparent"):
                v3.VListItem(
                    v_for="e in browse_entries",
                    key="e.path",
                    title=("e.name",),
                    prepend_icon=("e.icon",),
                    click=(self.activate, "[e.path, e.kind]"),
                    disabled=("busy",),
                    classes="browse-entry",
                    density="compact",
                )
                html.Div(
                    "No images or folders here.",
                    v_if=("!browse_entries.length",),
                    classes="text-caption pa-1",
                )
            html.Div(
                "{{ browse_left_out }} more not listed",
                v_if=("browse_left_out",),
                classes="text-caption",
            )
            v3.VAlert("{{ browse_error }}", v_if=("browse_error",), type="error", density="compact", id="browse-error")

    def _set(self, **values: Any) -> None:
        with self.app.state:
            for k, v in values.items():
                self.app.state[k] = v
