import slicer
import vtk
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

try:
    from slicer.i18n import tr as _
    from slicer.i18n import translate
except ImportError:  # Slicer before 5.4 has no slicer.i18n: the texts stay in English

    def _(text):
        return text

    def translate(context, text):
        return text


# The shared logic package WeakAnnotateLib is installed beside the WeakAnnotate module; it is imported inside
# the methods that use it, so that this file loads even before the extension's Python dependencies are installed
# (the widget's setup() first asks WeakAnnotateDesktop.first_run, which installs them on first use).

#
# SurfaceTemplate
#


class SurfaceTemplate(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Surface Template")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation") + ".WeakAnnotate"]
        self.parent.dependencies = []
        self.parent.contributors = ["WeakAnnotate developers"]
        self.parent.helpText = _("""
Segment an object from a few points placed on its surface. A sphere template is deformed to pass through the
points (an active surface, updated as points are placed) and rasterised into a pseudo-mask; Weak-Net, trained on
such templates, segments new volumes.
""")
        self.parent.acknowledgementText = _("""
Implements surface-point supervision: sparse 3D surface points deform a sphere template, and Weak-Net learns
the boundaries with a reconstruction branch (paper: surface_points_weaknet). Part of the WeakAnnotate extension.
""")


#
# SurfaceTemplateParameterNode
#


@parameterNodeWrapper
class SurfaceTemplateParameterNode:
    """
    inputVolume - The image to segment.
    surfacePoints - Points on the object's surface (at least 5).
    outputSegmentation - The segmentation that receives the result.
    targetSegmentName - The segment (created if missing) that receives the result.
    autoUpdate - Deform the template as points are placed, moved or deleted.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    surfacePoints: vtkMRMLMarkupsFiducialNode
    outputSegmentation: vtkMRMLSegmentationNode
    targetSegmentName: str = "Object"
    autoUpdate: bool = True


#
# SurfaceTemplateWidget
#


class SurfaceTemplateWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Uses ScriptedLoadableModuleWidget base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._pointWatcher = None  # WeakAnnotateDesktop.points.PointListWatcher of the surface points

    def setup(self) -> None:
        from WeakAnnotateDesktop.first_run import dependencies_ready

        ScriptedLoadableModuleWidget.setup(self)
        # First use in desktop Slicer: while Python packages are missing the panel says which, installs them (asked
        # once) and reloads the module; nothing below runs until then (it needs them).
        if not dependencies_ready(self, "SurfaceTemplate"):
            return
        from WeakAnnotateDesktop.points import PointListWatcher

        # Load widget from .ui file (created by Qt Designer); the point table follows the points selector
        # through a connection declared in the .ui file.
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SurfaceTemplate.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = SurfaceTemplateLogic()
        self.ui.progressBar.visible = False

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.editStoredPointsButton.connect("clicked(bool)", self.onEditStoredPoints)
        # Placing, moving or deleting a point starts the effort clock and deforms the template (auto update):
        # once, shortly after a drag ends.
        self._pointWatcher = PointListWatcher(
            self.onAutoUpdate, 100, edited=self.logic.notePointsEdited, active=self._autoUpdating
        )

        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        if self._pointWatcher:
            self._pointWatcher.stop()
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        if self.logic is None:  # setup() stopped at the dependency check: the panel shows what to install
            return
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens a different module."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed."""
        self.setParameterNode(None)
        self.logic.reset()

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Ensure parameter node exists and observed."""
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode) -> None:
        """Set and observe parameter node; changes in the GUI update the parameter node and vice versa."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _autoUpdating(self) -> bool:
        p = self._parameterNode
        return bool(p and p.autoUpdate and p.inputVolume)

    def onAutoUpdate(self) -> None:
        from WeakAnnotateDesktop.status import showing_input_errors

        p = self._parameterNode
        if not p or not p.inputVolume or not p.surfacePoints:
            return
        # Too few points yet, or a point that would fold the surface: said in the status line, and the previous
        # template stays shown.
        with showing_input_errors(self.ui.statusLabel):
            self.ui.statusLabel.text = self.logic.updatePreview(p.inputVolume, p.surfacePoints)

    def _checkCanApply(self, caller=None, event=None) -> None:
        p = self._parameterNode
        self._pointWatcher.follow(p.surfacePoints if p else None)
        if p and p.inputVolume and p.surfacePoints and p.outputSegmentation:
            self.ui.applyButton.toolTip = _("Rasterise the template into the target segment.")
            self.ui.applyButton.enabled = True
        else:
            self.ui.applyButton.toolTip = _("Select an input volume, the surface points and an output segmentation.")
            self.ui.applyButton.enabled = False

    def onApplyButton(self) -> None:
        """Fit, rasterise and store; bad input is reported in the panel and the scene is left as it was."""
        from WeakAnnotateDesktop.status import showing_input_errors

        p = self._parameterNode
        self.ui.statusLabel.text = ""
        with showing_input_errors(self.ui.statusLabel, _("Surface template fitting failed."), wait_cursor=True):
            self.ui.statusLabel.text = self.logic.process(
                p.inputVolume, p.surfacePoints, p.outputSegmentation, p.targetSegmentName
            )

    def onEditStoredPoints(self) -> None:
        """Bring back the points stored with the target segment, so that its template can be edited."""
        from WeakAnnotateDesktop.status import showing_input_errors

        p = self._parameterNode
        with showing_input_errors(self.ui.statusLabel) as outcome:
            p.surfacePoints = self.logic.pointsFromSegment(p.outputSegmentation, p.targetSegmentName)
        if outcome.ok:
            self.onAutoUpdate()


#
# SurfaceTemplateLogic
#


class SurfaceTemplateLogic(ScriptedLoadableModuleLogic):
    """The module's computation; usable without the widget (from the Python console, a test or a script).
    Uses ScriptedLoadableModuleLogic base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    MINIMUM_POINTS = 5

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.reset()

    def reset(self) -> None:
        """Forget the warm surface, its model node and the effort clocks (e.g. when the scene closes)."""
        self.surface = None
        self.modelNode = None
        self._firstPointTime = {}  # point list node ID → time.monotonic() of its first placed point

    def getParameterNode(self):
        return SurfaceTemplateParameterNode(super().getParameterNode())

    def notePointsEdited(self, pointsNode) -> None:
        """Start the effort clock of a point list at its first placed point (reset when it is emptied)."""
        import time

        if pointsNode is None:
            return
        nodeId = pointsNode.GetID()
        if pointsNode.GetNumberOfDefinedControlPoints() == 0:
            self._firstPointTime.pop(nodeId, None)
        elif nodeId not in self._firstPointTime:
            self._firstPointTime[nodeId] = time.monotonic()

    def effortSeconds(self, pointsNode):
        """Seconds since the first point of ``pointsNode`` was placed, or None if not seen placing."""
        import time

        start = self._firstPointTime.get(pointsNode.GetID()) if pointsNode is not None else None
        return None if start is None else time.monotonic() - start

    def updatePreview(self, inputVolume, surfacePoints) -> str:
        """Deform the (warm) template through the current points and show it as a model; returns a status line."""
        import time

        from WeakAnnotateLib.core.errors import InputError
        from WeakAnnotateLib.methods.surface_template.active_surface import ActiveSurface
        from WeakAnnotateLib.methods.surface_template.nodes import update_model_node
        from WeakAnnotateLib.scene.mrml_adapter import geometry_of_node, points_of_node
        from WeakAnnotateLib.scene.slicer_runtime import get_runtime

        if inputVolume is None or inputVolume.GetImageData() is None:
            raise InputError(_("Select an input volume with image data."))
        points, _labels = points_of_node(surfacePoints)
        if len(points) < self.MINIMUM_POINTS:
            raise InputError(
                _("{placed} of at least {minimum} points placed; keep placing.").format(
                    placed=len(points), minimum=self.MINIMUM_POINTS
                )
            )
        start = time.perf_counter()
        if self.surface is None:
            self.surface = ActiveSurface()
        self.surface.geometry = geometry_of_node(inputVolume)
        self.surface.set_points(points)
        self.surface.update()
        self.modelNode = update_model_node(get_runtime(), self.surface, self.modelNode)
        milliseconds = 1000.0 * (time.perf_counter() - start)
        return _("{count} points: template updated in {milliseconds:.0f} ms.").format(
            count=len(points), milliseconds=milliseconds
        )

    def process(self, inputVolume, surfacePoints, outputSegmentation, targetSegmentName: str = "Object") -> str:
        """Fit the template to the points and write it into ``targetSegmentName``; returns a one-line summary.

        The computation is WeakAnnotateLib.methods.surface_template.nodes.surface_template_from_nodes (the same
        the web app and the tests use); this adds the warm surface, the preview model and the effort clock.
        """
        from WeakAnnotateLib.core.colors import segment_color
        from WeakAnnotateLib.core.errors import InputError
        from WeakAnnotateLib.methods.surface_template.nodes import surface_template_from_nodes, update_model_node
        from WeakAnnotateLib.scene.slicer_runtime import get_runtime

        if surfacePoints is None:
            raise InputError(_("Select or create the point list holding the surface points."))
        name = (targetSegmentName or "").strip() or "Object"
        seconds = self.effortSeconds(surfacePoints)
        _segmentId, surface = surface_template_from_nodes(
            get_runtime(),
            inputVolume,
            surfacePoints,
            outputSegmentation,
            name,
            segment_color(name),
            surface=self.surface,
            effort_seconds=seconds,
        )
        self.surface = surface
        self.modelNode = update_model_node(get_runtime(), surface, self.modelNode)
        if seconds is None:
            return _("Segment '{name}' from {count} points.").format(name=name, count=len(surface.points))
        return _("Segment '{name}' from {count} points, {seconds:.0f} s of annotation.").format(
            name=name, count=len(surface.points), seconds=seconds
        )

    def pointsFromSegment(self, segmentationNode, segmentName: str):
        """A point list holding the points stored with a segment by a previous Apply."""
        from WeakAnnotateDesktop.points import points_node_from_segment
        from WeakAnnotateLib.methods.surface_template.nodes import POINTS_TAG

        return points_node_from_segment(
            segmentationNode, segmentName, POINTS_TAG, what="surface points", hint="place new points"
        )


#
# SurfaceTemplateTest
#


class SurfaceTemplateTest(ScriptedLoadableModuleTest):
    """The module's self-tests: the same bodies run headless under pytest (WeakAnnotateLib.apps.selftests).
    Uses ScriptedLoadableModuleTest base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def setUp(self):
        """Reset the state: clear the scene."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_SurfaceTemplate_selftests()

    def test_SurfaceTemplate_selftests(self):
        from WeakAnnotateDesktop.first_run import require_dependencies

        require_dependencies("SurfaceTemplate")  # missing packages: a message saying so, not an ImportError
        from WeakAnnotateLib.apps.selftests import run_module_selftests
        from WeakAnnotateLib.scene.slicer_runtime import get_runtime

        run_module_selftests("SurfaceTemplate", get_runtime())
