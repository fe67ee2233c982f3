import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
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
# WeakAnnotate
#


class WeakAnnotate(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "WeakAnnotate"
        self.parent.categories = ["Segmentation.WeakAnnotate"]
        self.parent.dependencies = []
        self.parent.contributors = ["WeakAnnotate developers"]
        self.parent.helpText = """
The hub of the WeakAnnotate extension: turn cheap annotations (six extreme points, a 3D box, a few surface
points, boxes around PET lesions) into 3D segmentations and trained networks. The annotation modules are
Extreme Point Segmentation, Box Correction and Surface Template; this module evaluates a segmentation against a
reference (Dice, IoU, 95th-percentile Hausdorff distance and average surface distance, in mm).
"""
        self.parent.acknowledgementText = """
WeakAnnotate implements weakly supervised segmentation from extreme points (paper:
extreme_points_random_walker), from boxes (papers: box_correction, tightness_prior_logbarrier) and from surface
points (paper: surface_points_weaknet); the hub trains PET lesion segmentation from boxes with a modified Dice
and a Mumford-Shah level-set loss (paper: pet_boxes_mumford_shah; Afshari, BenTaieb, Mirikharaji and Hamarneh,
"Weakly Supervised Fully Convolutional Network for PET Lesion Segmentation").
"""


#
# WeakAnnotateParameterNode
#


@parameterNodeWrapper
class WeakAnnotateParameterNode:
    """
    inputVolume - The volume whose grid the segmentations are compared on.
    referenceSegmentation - The reference segmentation (its first segment is used).
    predictionSegmentation - The segmentation to evaluate (its first segment is used).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    referenceSegmentation: vtkMRMLSegmentationNode
    predictionSegmentation: vtkMRMLSegmentationNode


#
# WeakAnnotateWidget
#


class WeakAnnotateWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
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

        # Load widget from .ui file (created by Qt Designer).
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/WeakAnnotate.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = WeakAnnotateLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.evaluateButton.connect("clicked(bool)", self.onEvaluateButton)

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
        if p and p.inputVolume and p.referenceSegmentation and p.predictionSegmentation:
            self.ui.evaluateButton.toolTip = "Compare the prediction's first segment with the reference's."
            self.ui.evaluateButton.enabled = True
        else:
            self.ui.evaluateButton.toolTip = "Select a volume, a reference and a prediction segmentation."
            self.ui.evaluateButton.enabled = False

    def onEvaluateButton(self) -> None:
        """Compare the prediction with the reference when the user clicks "Evaluate"."""
        from WeakAnnotateLib.errors import InputError

        p = self._parameterNode
        self.ui.statusLabel.text = ""
        self.ui.resultsLabel.text = ""
        with slicer.util.tryWithErrorDisplay("Evaluation failed.", waitCursor=True):
            try:
                results = self.logic.evaluate(p.inputVolume, p.referenceSegmentation, p.predictionSegmentation)
            except InputError as error:
                # Bad input is the user's to fix: one clear line, no traceback.
                self.ui.statusLabel.text = str(error)
                return
            self.ui.resultsLabel.text = self.logic.resultsTable(results)
            self.ui.statusLabel.text = "Evaluated."


#
# WeakAnnotateLogic
#


class WeakAnnotateLogic(ScriptedLoadableModuleLogic):
    """The module's computation; usable without the widget (from the Python console, a test or a script).
    Uses ScriptedLoadableModuleLogic base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return WeakAnnotateParameterNode(super().getParameterNode())

    def evaluate(self, volumeNode, referenceSegmentation, predictionSegmentation) -> dict:
        """Dice, IoU, HD95 (mm) and ASD (mm) of the prediction's first segment against the reference's,
        both resampled onto the volume's grid."""
        from WeakAnnotateLib import metrics, mrml_adapter
        from WeakAnnotateLib.errors import InputError

        if volumeNode is None or volumeNode.GetImageData() is None:
            raise InputError("Select the volume whose grid the segmentations are compared on.")
        masks = []
        geometry = mrml_adapter.geometry_of_node(volumeNode)
        for role, node in (("reference", referenceSegmentation), ("prediction", predictionSegmentation)):
            if node is None:
                raise InputError(f"Select a {role} segmentation.")
            ids = mrml_adapter.segment_ids(node)
            if not ids:
                raise InputError(f"The {role} segmentation {node.GetName()!r} has no segment.")
            masks.append(mrml_adapter.segment_mask(node, ids[0], geometry))
        return metrics.evaluate_masks(masks[0], masks[1], geometry)

    @staticmethod
    def resultsTable(results: dict) -> str:
        """The metrics as a small HTML table for a QLabel; a distance is "n/a" when the prediction is empty."""
        rows = [("Dice", "dice", ""), ("IoU", "iou", ""), ("HD95", "hd95_mm", " mm"), ("ASD", "asd_mm", " mm")]
        cells = ""
        for name, key, unit in rows:
            value = results.get(key)
            text = "n/a (empty prediction)" if value is None else f"{value:.3f}{unit}"
            cells += f"<tr><td>{name}</td><td align='right'>{text}</td></tr>"
        return f"<table cellspacing='4'>{cells}</table>"


#
# WeakAnnotateTest
#


class WeakAnnotateTest(ScriptedLoadableModuleTest):
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
        self.test_WeakAnnotate_selftests()

    def test_WeakAnnotate_selftests(self):
        from WeakAnnotateLib.selftests import run_module_selftests
        from WeakAnnotateLib.slicer_runtime import get_runtime

        run_module_selftests("WeakAnnotate", get_runtime())
