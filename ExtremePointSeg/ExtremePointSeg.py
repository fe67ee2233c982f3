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

# The shared logic package WeakAnnotateLib is installed beside the WeakAnnotate module; it is imported inside
# the methods that use it, so that this file loads even before the extension's Python dependencies are installed.

#
# ExtremePointSeg
#


class ExtremePointSeg(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Extreme Point Segmentation"
        self.parent.categories = ["Segmentation.WeakAnnotate"]
        self.parent.dependencies = []
        self.parent.contributors = ["WeakAnnotate developers"]
        self.parent.helpText = """
Segment an object from six clicks: its extreme points along each axis (left/right, anterior/posterior,
inferior/superior). Geodesic paths between opposite points become foreground scribbles, a random walker turns
them into a pseudo-mask, and a 3D network trained on such pseudo-masks segments new volumes.
"""
        self.parent.acknowledgementText = """
Implements the extreme-point method: six extreme-point clicks constrain a random-walker segmentation, which
trains a 3D fully convolutional network with an extra point channel, refined in rounds with random-walker
regularisation (paper: extreme_points_random_walker). Part of the WeakAnnotate extension.
"""


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
    """

    inputVolume: vtkMRMLScalarVolumeNode
    extremePoints: vtkMRMLMarkupsFiducialNode
    outputSegmentation: vtkMRMLSegmentationNode
    targetSegmentName: str = "Object"


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

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)

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

        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
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

    def _checkCanApply(self, caller=None, event=None) -> None:
        p = self._parameterNode
        if p and p.inputVolume and p.extremePoints and p.outputSegmentation:
            self.ui.applyButton.toolTip = "Segment the object from the six extreme points."
            self.ui.applyButton.enabled = True
        else:
            self.ui.applyButton.toolTip = "Select an input volume, the extreme points and an output segmentation."
            self.ui.applyButton.enabled = False

    def onApplyButton(self) -> None:
        """Run processing when user clicks "Apply" button."""
        from WeakAnnotateLib.errors import InputError

        p = self._parameterNode
        self.ui.statusLabel.text = ""
        with slicer.util.tryWithErrorDisplay("Extreme-point segmentation failed.", waitCursor=True):
            try:
                self.logic.process(p.inputVolume, p.extremePoints, p.outputSegmentation, p.targetSegmentName)
            except (InputError, NotImplementedError) as error:
                # Bad input (or a step not there yet) is the user's to fix: one clear line, no traceback.
                self.ui.statusLabel.text = str(error)
                return
            self.ui.statusLabel.text = "Done."


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

    def process(self, inputVolume, extremePoints, outputSegmentation, targetSegmentName: str = "Object") -> None:
        """Check the inputs, then segment the object into ``targetSegmentName`` of ``outputSegmentation``."""
        from WeakAnnotateLib.errors import InputError
        from WeakAnnotateLib.mrml_adapter import points_of_node

        if inputVolume is None or inputVolume.GetImageData() is None:
            raise InputError("Select an input volume with image data.")
        if outputSegmentation is None:
            raise InputError("Select or create an output segmentation.")
        points, _ = points_of_node(extremePoints)
        if len(points) != self.REQUIRED_POINTS:
            raise InputError(
                f"Place exactly {self.REQUIRED_POINTS} extreme points (both ends of the object along each axis); "
                f"{len(points)} are placed."
            )
        raise NotImplementedError("Segmentation from extreme points arrives in a later release.")


#
# ExtremePointSegTest
#


class ExtremePointSegTest(ScriptedLoadableModuleTest):
    """The module's self-tests: the same bodies run headless under pytest (WeakAnnotateLib.selftests).
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
        from WeakAnnotateLib.selftests import run_module_selftests
        from WeakAnnotateLib.slicer_runtime import get_runtime

        run_module_selftests("ExtremePointSeg", get_runtime())
