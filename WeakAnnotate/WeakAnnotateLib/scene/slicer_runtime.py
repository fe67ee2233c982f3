"""The Slicer core the logic runs on: the running desktop application, or the ``slicer-core`` wheels headless.

``get_runtime()`` returns the scene and the module logics the logic layer uses. Inside desktop Slicer they
are the application's own. Everywhere else (tests, CLI, web app) a scene is bootstrapped from the wheels the
way ``trame_slicer.core.SlicerApp`` does it, without views: application logic, colours, volumes, markups,
terminologies, segmentations (constructing its logic registers the labelmap ⇄ surface converters) and
subject hierarchy.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

_lock = threading.Lock()
_shared: SlicerRuntime | None = None


@dataclass
class SlicerRuntime:
    scene: Any
    app_logic: Any
    volumes_logic: Any
    markups_logic: Any
    segmentations_logic: Any
    terminologies_logic: Any
    headless: bool
    # The application logic holds module logics weakly: without a reference here they are destroyed (and a
    # destroyed colour logic removes the default colour tables from the scene).
    kept_alive: tuple[Any, ...] = ()

    def clear(self) -> None:
        """Remove the data nodes (volumes, markups, segmentations) and keep the singletons."""
        self.scene.Clear(False)


def in_desktop_slicer() -> bool:
    """True inside the running 3D Slicer application (its ``slicer`` module has an ``app``)."""
    import slicer

    return getattr(slicer, "app", None) is not None and hasattr(slicer, "mrmlScene")


def _desktop_runtime() -> SlicerRuntime:
    import slicer

    return SlicerRuntime(
        scene=slicer.mrmlScene,
        app_logic=slicer.app.applicationLogic(),
        volumes_logic=slicer.modules.volumes.logic(),
        markups_logic=slicer.modules.markups.logic(),
        segmentations_logic=slicer.modules.segmentations.logic(),
        terminologies_logic=slicer.modules.terminologies.logic(),
        headless=False,
    )


def new_headless_runtime(*, vtk_warnings: bool = False) -> SlicerRuntime:
    """A fresh scene with the module logics registered, from the ``slicer-core`` wheels."""
    import slicer
    from vtkmodules.vtkCommonCore import vtkCollection, vtkObject

    # The logic validates its inputs before Slicer sees them; VTK's own warnings would only repeat them
    # in a less helpful form on stderr.
    if not vtk_warnings:
        vtkObject.GlobalWarningDisplayOff()

    scene = slicer.vtkMRMLScene()
    crosshair = slicer.vtkMRMLCrosshairNode()
    crosshair.SetCrosshairName("default")
    scene.AddNode(crosshair)

    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    app_logic.GetColorLogic().SetMRMLScene(scene)
    app_logic.GetColorLogic().AddDefaultColorNodes()
    app_logic.SetSliceLogics(vtkCollection())
    app_logic.SetViewLogics(vtkCollection())

    def register(logic: Any, name: str, share: str | None = None) -> Any:
        if share is not None:
            logic.SetModuleShareDirectory(share)
        logic.SetMRMLScene(scene)
        logic.SetMRMLApplicationLogic(app_logic)
        app_logic.SetModuleLogic(name, logic)
        return logic

    colors = register(app_logic.GetColorLogic(), "Colors")
    volumes = register(slicer.vtkSlicerVolumesLogic(), "Volumes")
    markups = register(slicer.vtkSlicerMarkupsLogic(), "Markups")
    terminologies = register(slicer.vtkSlicerTerminologiesModuleLogic(), "Terminologies", _terminology_share())
    segmentations = register(slicer.vtkSlicerSegmentationsModuleLogic(), "Segmentations")
    subject_hierarchy = register(slicer.vtkSlicerSubjectHierarchyModuleLogic(), "SubjectHierarchy")
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)
    return SlicerRuntime(
        scene,
        app_logic,
        volumes,
        markups,
        segmentations,
        terminologies,
        headless=True,
        kept_alive=(colors, subject_hierarchy),
    )


def _terminology_share() -> str:
    # slicer-core ships no terminology files; trame-slicer (pinned with it) does.
    from trame_slicer.resources import resources_path

    return str(resources_path() / "terminologies")


def get_runtime() -> SlicerRuntime:
    """The desktop application's scene inside Slicer; otherwise one shared headless scene per process."""
    global _shared
    if in_desktop_slicer():
        return _desktop_runtime()
    with _lock:
        if _shared is None:
            _shared = new_headless_runtime()
        return _shared
