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
# ExtremePointSeg
#


class ExtremePointSeg(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Extreme Point Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation") + ".WeakAnnotate"]
        self.parent.dependencies = []
        self.parent.contributors = ["WeakAnnotate developers"]
        self.parent.helpText = _("""
Segment an object from six clicks: its extreme points along each axis (left/right, anterior/posterior,
inferior/superior). Geodesic paths between opposite points become foreground scribbles, a random walker turns
them into a pseudo-mask, and a 3D network trained on such pseudo-masks segments new volumes.
""")
        self.parent.acknowledgementText = _("""
Implements the extreme-point method: six extreme-point clicks constrain a random-walker segmentation, which
trains a 3D fully convolutional network with an extra point channel, refined in rounds with random-walker
regularisation (paper: extreme_points_random_walker). Part of the WeakAnnotate extension.
""")


#
# ExtremePointSegParameterNode
#


@parameterNodeWrapper
class ExtremePointSegParameterNode:
    """
    inputVolume - The image to segment.
    extremePoints - The six extreme points of the object.
    outputSegmentation - The segmentation that receives the result.
    targetSegmentName - The segment (created if missing) that receives the result.
    autoUpdate - Re-run when a point is placed or dropped after dragging.
    showProbability - Show the foreground probability as an overlay.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    extremePoints: vtkMRMLMarkupsFiducialNode
    outputSegmentation: vtkMRMLSegmentationNode
    targetSegmentName: str = "Object"
    autoUpdate: bool = False
    showProbability: bool = False


#
# ExtremePointSegWidget
#


class ExtremePointSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Uses ScriptedLoadableModuleWidget base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._pointWatcher = None  # WeakAnnotateDesktop.points.PointListWatcher of the extreme points

    def setup(self) -> None:
        from WeakAnnotateDesktop.first_run import dependencies_ready

        ScriptedLoadableModuleWidget.setup(self)
        # First use in desktop Slicer: while Python packages are missing the panel says which, installs them (asked
        # once) and reloads the module; nothing below runs until then (it needs them).
        if not dependencies_ready(self, "ExtremePointSeg"):
            return
        from WeakAnnotateDesktop.points import PointListWatcher

        # Load widget from .ui file (created by Qt Designer); the point table follows the points selector
        # through a connection declared in the .ui file.
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ExtremePointSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = ExtremePointSegLogic()
        self.ui.progressBar.visible = False

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.editStoredPointsButton.connect("clicked(bool)", self.onEditStoredPoints)
        self.ui.extremePointsSelector.connect("nodeAddedByUser(vtkMRMLNode*)", self.logic.prepareExtremePointsNode)
        # Placing or dropping a point re-runs the segmentation (auto update): once, shortly after a drag ends.
        self._pointWatcher = PointListWatcher(self.onAutoUpdate, 150, active=self._autoUpdating)

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
        return bool(p and p.autoUpdate and self.ui.applyButton.enabled)

    def onAutoUpdate(self) -> None:
        points = self._parameterNode.extremePoints if self._parameterNode else None
        if points is not None and points.GetNumberOfDefinedControlPoints() == self.logic.REQUIRED_POINTS:
            self.onApplyButton()

    def _checkCanApply(self, caller=None, event=None) -> None:
        p = self._parameterNode
        self._pointWatcher.follow(p.extremePoints if p else None)
        if p and p.inputVolume and p.extremePoints and p.outputSegmentation:
            self.ui.applyButton.toolTip = _("Segment the object from the six extreme points.")
            self.ui.applyButton.enabled = True
        else:
            self.ui.applyButton.toolTip = _("Select an input volume, the extreme points and an output segmentation.")
            self.ui.applyButton.enabled = False

    def onApplyButton(self) -> None:
        """Segment from the six points; bad input is reported in the panel and the scene is left as it was."""
        from WeakAnnotateDesktop.status import showing_input_errors

        p = self._parameterNode
        self.ui.statusLabel.text = _("Segmenting…")
        self.ui.progressBar.visible = True
        self.ui.progressBar.setRange(0, 0)  # busy: the solve is one step of well under a second
        slicer.app.processEvents()
        try:
            with showing_input_errors(self.ui.statusLabel, _("Extreme-point segmentation failed."), wait_cursor=True):
                self.ui.statusLabel.text = self.logic.process(
                    p.inputVolume,
                    p.extremePoints,
                    p.outputSegmentation,
                    p.targetSegmentName,
                    showProbability=p.showProbability,
                )
        finally:
            self.ui.progressBar.visible = False

    def onEditStoredPoints(self) -> None:
        """Bring back the points stored with the target segment, so that the segment can be edited."""
        from WeakAnnotateDesktop.status import showing_input_errors

        p = self._parameterNode
        with showing_input_errors(self.ui.statusLabel):
            p.extremePoints = self.logic.pointsFromSegment(p.outputSegmentation, p.targetSegmentName)
            self.ui.statusLabel.text = _(
                "Points restored from the segment: move them and Apply (or enable auto update)."
            )


#
# ExtremePointSegLogic
#


class ExtremePointSegLogic(ScriptedLoadableModuleLogic):
    """The module's computation; usable without the widget (from the Python console, a test or a script).
    Uses ScriptedLoadableModuleLogic base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    REQUIRED_POINTS = 6

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return ExtremePointSegParameterNode(super().getParameterNode())

    def prepareExtremePointsNode(self, pointsNode) -> None:
        """A new point list for extreme points takes at most six points, named in placing order."""
        if pointsNode is None:
            return
        pointsNode.SetRequiredNumberOfControlPoints(self.REQUIRED_POINTS)
        pointsNode.SetMaximumNumberOfControlPoints(self.REQUIRED_POINTS)
        pointsNode.SetMarkupLabelFormat("EP-%d")

    def process(
        self,
        inputVolume,
        extremePoints,
        outputSegmentation,
        targetSegmentName: str = "Object",
        showProbability: bool = False,
    ) -> str:
        """Segment into ``targetSegmentName`` of ``outputSegmentation``; returns a one-line summary.

        The computation is WeakAnnotateLib.methods.extreme_points.segmenter.segment_from_nodes (the same the CLI
        and the web app use); this adds what the desktop shows: points labelled by axis and the optional
        probability overlay.
        """
        import time

        from WeakAnnotateLib.core.colors import segment_color
        from WeakAnnotateLib.core.errors import InputError
        from WeakAnnotateLib.evaluation.simulate import axis_end_names
        from WeakAnnotateLib.methods.extreme_points.segmenter import segment_from_nodes
        from WeakAnnotateLib.scene.mrml_adapter import geometry_of_node
        from WeakAnnotateLib.scene.slicer_runtime import get_runtime

        if inputVolume is None or inputVolume.GetImageData() is None:
            raise InputError(_("Select an input volume with image data."))
        if outputSegmentation is None:
            raise InputError(_("Select or create an output segmentation."))
        if extremePoints is None:
            raise InputError(_("Select or create the point list holding the six extreme points."))
        name = (targetSegmentName or "").strip() or "Object"
        start = time.perf_counter()
        _segmentId, result = segment_from_nodes(
            get_runtime(), inputVolume, extremePoints, outputSegmentation, name, segment_color(name)
        )
        seconds = time.perf_counter() - start
        # Label each point by the anatomical end it marks (e.g. "left", "superior"), as the pairing found it.
        geometry = geometry_of_node(inputVolume)
        for axis, (low, high) in enumerate(result.pairs):
            lowName, highName = axis_end_names(geometry, axis)
            extremePoints.SetNthControlPointLabel(low, lowName)
            extremePoints.SetNthControlPointLabel(high, highName)
        self.showProbability(inputVolume, result, showProbability, name)
        volumeMl = result.mask.sum() * float(geometry.spacing.prod()) / 1000.0
        return _("Segment '{name}': {volume:.1f} ml in {seconds:.2f} s.").format(
            name=name, volume=volumeMl, seconds=seconds
        )

    def showProbability(self, inputVolume, result, show: bool, segmentName: str) -> None:
        """Create or update '<segment> probability' and show it over the image (or hide it)."""
        from WeakAnnotateLib.files.image_io import Image
        from WeakAnnotateLib.scene.mrml_adapter import add_volume_node, geometry_of_node
        from WeakAnnotateLib.scene.slicer_runtime import get_runtime

        nodeName = f"{segmentName} probability"
        node = slicer.mrmlScene.GetFirstNodeByName(nodeName)
        if not show:
            if node is not None:
                slicer.util.setSliceViewerLayers(foreground=None)
            return
        geometry = geometry_of_node(inputVolume)
        probability = result.full_probability(geometry.shape)
        if node is None:
            node = add_volume_node(get_runtime(), Image(probability, geometry), nodeName)
            display = node.GetDisplayNode()
            display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeFileColdToHotRainbow.txt")
            display.AutoWindowLevelOff()
            display.SetWindowLevelMinMax(0.0, 1.0)
        else:
            slicer.util.updateVolumeFromArray(node, probability)
        slicer.util.setSliceViewerLayers(foreground=node, foregroundOpacity=0.4)

    def pointsFromSegment(self, segmentationNode, segmentName: str):
        """A point list holding the six points stored with a segment by a previous Apply."""
        from WeakAnnotateDesktop.points import points_node_from_segment
        from WeakAnnotateLib.methods.extreme_points.segmenter import POINTS_TAG

        node = points_node_from_segment(
            segmentationNode, segmentName, POINTS_TAG, what="extreme points", hint="place six new points"
        )
        self.prepareExtremePointsNode(node)
        return node


#
# ExtremePointSegTest
#


class ExtremePointSegTest(ScriptedLoadableModuleTest):
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
        self.test_ExtremePointSeg_selftests()

    def test_ExtremePointSeg_selftests(self):
        from WeakAnnotateDesktop.first_run import require_dependencies

        require_dependencies("ExtremePointSeg")  # missing packages: a message saying so, not an ImportError
        from WeakAnnotateLib.apps.selftests import run_module_selftests
        from WeakAnnotateLib.scene.slicer_runtime import get_runtime

        run_module_selftests("ExtremePointSeg", get_runtime())
