import slicer
import vtk
from slicer import vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
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
# BoxCorrection
#


class BoxCorrection(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Box Correction")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation") + ".WeakAnnotate"]
        self.parent.dependencies = []
        self.parent.contributors = ["WeakAnnotate developers"]
        self.parent.helpText = _("""
Segment an object from one 3D box drawn loosely around it. The box is a stack of loose 2D boxes; a patch
classifier trained on a few fully labelled volumes tightens every 2D box, and a network trained with box
constraints (tightness prior, emptiness outside the box, size bounds) segments new volumes.
""")
        self.parent.acknowledgementText = _("""
Implements box correction: loose per-slice boxes from one 3D box, tightened by a patch classifier
(paper: box_correction), then training with the tightness prior, background emptiness and box-size constraints
solved with log-barrier extensions (paper: tightness_prior_logbarrier). Part of the WeakAnnotate extension.
""")


#
# BoxCorrectionParameterNode
#


@parameterNodeWrapper
class BoxCorrectionParameterNode:
    """
    inputVolume - The image to segment.
    inputBox - The 3D box (ROI) loosely around the object.
    outputSegmentation - The segmentation that receives the result.
    modelPath - Folder (or model.json) of a trained box-correction patch classifier.
    boxesPath - Where Accept writes the corrected per-slice boxes (.json).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    inputBox: vtkMRMLMarkupsROINode
    outputSegmentation: vtkMRMLSegmentationNode
    modelPath: str = ""
    boxesPath: str = ""


#
# BoxCorrectionWidget
#


class BoxCorrectionWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
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
        from WeakAnnotateDesktop.first_run import dependencies_ready

        ScriptedLoadableModuleWidget.setup(self)
        # First use in desktop Slicer: while Python packages are missing the panel says which, installs them (asked
        # once) and reloads the module; nothing below runs until then (it needs them).
        if not dependencies_ready(self, "BoxCorrection"):
            return

        # Load widget from .ui file (created by Qt Designer); the place widget follows the box selector
        # through a connection declared in the .ui file.
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BoxCorrection.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = BoxCorrectionLogic()
        self.ui.progressBar.visible = False

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.acceptButton.connect("clicked(bool)", self.onAcceptButton)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
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

    def _checkCanApply(self, caller=None, event=None) -> None:
        p = self._parameterNode
        if p and p.inputVolume and p.inputBox and p.outputSegmentation and p.modelPath.strip():
            self.ui.applyButton.toolTip = _("Tighten the box slice by slice into a pseudo-mask of the object.")
            self.ui.applyButton.enabled = True
        else:
            self.ui.applyButton.toolTip = _(
                "Select an input volume, a box, an output segmentation and a box classifier."
            )
            self.ui.applyButton.enabled = False
        can_accept = bool(p and self.logic.lastResult is not None and p.boxesPath.strip())
        self.ui.acceptButton.enabled = can_accept
        self.ui.acceptButton.toolTip = (
            _("Store the corrected boxes, as edited in the 'corrected' segment, in the boxes file and on the box.")
            if can_accept
            else _("Apply first, then choose a boxes file (.json).")
        )

    def onApplyButton(self) -> None:
        """Run processing when user clicks "Apply" button."""
        from WeakAnnotateDesktop.status import showing_input_errors

        p = self._parameterNode
        self.ui.statusLabel.text = ""
        with showing_input_errors(self.ui.statusLabel, _("Box correction failed."), wait_cursor=True):
            result = self.logic.process(p.inputVolume, p.inputBox, p.outputSegmentation, p.modelPath.strip())
            lines = [
                _(
                    "{count} slice boxes tightened in {seconds:.2f} s: segments 'raw boxes' (before) and "
                    "'corrected' (the pseudo-mask)."
                ).format(count=len(result.slices), seconds=result.seconds)
            ]
            warnings = [_("Warning: {warning}").format(warning=w) for w in result.warnings]
            self.ui.statusLabel.text = "\n".join(lines + warnings)
            self._checkCanApply()

    def onAcceptButton(self) -> None:
        """Store the corrected boxes as the user left them (edit the 'corrected' segment first if needed)."""
        from WeakAnnotateDesktop.status import showing_input_errors

        p = self._parameterNode
        with showing_input_errors(self.ui.statusLabel, _("Accepting the boxes failed."), wait_cursor=True):
            accepted = self.logic.accept(p.inputVolume, p.inputBox, p.outputSegmentation, p.boxesPath.strip())
            self.ui.statusLabel.text = _("Stored {count} slice boxes in {path}.").format(
                count=len(accepted.slices), path=p.boxesPath.strip()
            )


#
# BoxCorrectionLogic
#


class BoxCorrectionLogic(ScriptedLoadableModuleLogic):
    """The module's computation; usable without the widget (from the Python console, a test or a script).
    Uses ScriptedLoadableModuleLogic base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._model = None
        self._modelPath = None
        self.lastResult = None  # the last Apply's result and corrected segment ID, for Accept
        self.lastCorrectedId = ""

    def getParameterNode(self):
        return BoxCorrectionParameterNode(super().getParameterNode())

    def model(self, modelPath: str):
        """The patch classifier, loaded once per path (Apply is interactive: < 1 s per box)."""
        from WeakAnnotateLib.core.errors import InputError
        from WeakAnnotateLib.methods.box_correction.classifier import load_box_model

        if not modelPath:
            raise InputError(_("Choose a trained box classifier (the job folder of a box_patch_classifier job)."))
        if self._model is None or self._modelPath != modelPath:
            self._model = load_box_model(modelPath)
            self._modelPath = modelPath
        return self._model

    def process(self, inputVolume, inputBox, outputSegmentation, modelPath: str = ""):
        """Check the inputs, tighten the box slice by slice and write raw and corrected boxes as two segments."""
        from WeakAnnotateLib.core.errors import InputError
        from WeakAnnotateLib.methods.box_correction.classifier import apply_to_nodes
        from WeakAnnotateLib.scene.mrml_adapter import box_of_node
        from WeakAnnotateLib.scene.slicer_runtime import get_runtime

        if inputVolume is None or inputVolume.GetImageData() is None:
            raise InputError(_("Select an input volume with image data."))
        if outputSegmentation is None:
            raise InputError(_("Select or create an output segmentation."))
        box = box_of_node(inputBox)
        if (box.size <= 0).any():
            raise InputError(_("The box is empty; draw a box around the object."))
        result, ids = apply_to_nodes(get_runtime(), inputVolume, inputBox, outputSegmentation, self.model(modelPath))
        self.lastResult, self.lastCorrectedId = result, ids["corrected"]
        return result

    def accept(self, inputVolume, inputBox, outputSegmentation, boxesPath: str):
        """Write the last Apply's corrected boxes, as edited in its 'corrected' segment, to ``boxesPath``."""
        from WeakAnnotateLib.core.errors import InputError
        from WeakAnnotateLib.methods.box_correction.classifier import accept_from_nodes

        if self.lastResult is None:
            raise InputError(_("Apply box correction first; Accept stores its corrected boxes."))
        if not boxesPath:
            raise InputError(_("Choose a boxes file (.json) to store the corrected boxes in."))
        return accept_from_nodes(
            inputVolume, inputBox, outputSegmentation, self.lastCorrectedId, self.lastResult, boxesPath
        )


#
# BoxCorrectionTest
#


class BoxCorrectionTest(ScriptedLoadableModuleTest):
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
        self.test_BoxCorrection_selftests()

    def test_BoxCorrection_selftests(self):
        from WeakAnnotateDesktop.first_run import require_dependencies

        require_dependencies("BoxCorrection")  # missing packages: a message saying so, not an ImportError
        from WeakAnnotateLib.apps.selftests import run_module_selftests
        from WeakAnnotateLib.scene.slicer_runtime import get_runtime

        run_module_selftests("BoxCorrection", get_runtime())
