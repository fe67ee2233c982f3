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

Then correct any segment of the segmentation with clicks: "Add (object)" (Shift+A) and "Remove (not object)"
(Shift+R) place clicks that update the segment at once; Ctrl+Z / Ctrl+Y take back or re-apply one click.
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
    refineSegmentId - The segment of outputSegmentation that corrective clicks update (set by the panel).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    extremePoints: vtkMRMLMarkupsFiducialNode
    outputSegmentation: vtkMRMLSegmentationNode
    targetSegmentName: str = "Object"
    autoUpdate: bool = False
    showProbability: bool = False
    refineSegmentId: str = ""


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
        self._clickListObservations = []  # (point list, observer tag) of the refined segment's click lists
        self._pendingClickList = None  # the click list a point was just placed in (handled once placing is over)
        self._switchingMode = False
        self._refinedSegmentId = ""
        self._shortcuts = []

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

        # Corrective clicks: a mode button makes clicks in the views points of the refined segment's add or remove
        # list; each one updates the segment (logic.placeClick) as one undo step of the scene.
        self.ui.refineSegmentSelector.connect("currentSegmentChanged(QString)", self.onRefineSegmentChanged)
        self.ui.addClickButton.connect("toggled(bool)", lambda on: self.onClickMode(True, on))
        self.ui.removeClickButton.connect("toggled(bool)", lambda on: self.onClickMode(False, on))
        self.ui.undoClickButton.connect("clicked(bool)", self.onUndoClick)
        self.ui.redoClickButton.connect("clicked(bool)", self.onRedoClick)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndUndoEvent, self.onUndoRedo)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndRedoEvent, self.onUndoRedo)
        interactionNode = slicer.app.applicationLogic().GetInteractionNode()
        self.addObserver(interactionNode, interactionNode.InteractionModeChangedEvent, self.onInteractionModeChanged)
        selectionNode = slicer.app.applicationLogic().GetSelectionNode()
        self.addObserver(selectionNode, selectionNode.ActivePlaceNodeIDChangedEvent, self.onInteractionModeChanged)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        if self._pointWatcher:
            self._pointWatcher.stop()
        self._removeShortcuts()
        self._followClickLists(None, None)
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        if self.logic is None:  # setup() stopped at the dependency check: the panel shows what to install
            return
        self.initializeParameterNode()
        self._installShortcuts()

    def exit(self) -> None:
        """Called each time the user opens a different module."""
        self._removeShortcuts()
        if self.logic is not None:  # else setup() stopped at the dependency check: there are no buttons
            self._setClickMode(None)
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed."""
        self._setClickMode(None)
        self._followClickLists(None, None)
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
            if self._parameterNode.refineSegmentId:
                self.ui.refineSegmentSelector.setCurrentSegmentID(self._parameterNode.refineSegmentId)
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
        self._updateCorrections()

    def onApplyButton(self) -> None:
        """Segment from the six points; bad input is reported in the panel and the scene is left as it was."""
        from WeakAnnotateDesktop.status import showing_input_errors

        p = self._parameterNode
        self.ui.statusLabel.text = _("Segmenting…")
        self.ui.progressBar.visible = True
        self.ui.progressBar.setRange(0, 0)  # busy: the solve is one step of well under a second
        slicer.app.processEvents()
        try:
            with showing_input_errors(
                self.ui.statusLabel, _("Extreme-point segmentation failed."), wait_cursor=True
            ) as outcome:
                self.ui.statusLabel.text = self.logic.process(
                    p.inputVolume,
                    p.extremePoints,
                    p.outputSegmentation,
                    p.targetSegmentName,
                    showProbability=p.showProbability,
                )
        finally:
            self.ui.progressBar.visible = False
        if outcome.ok:  # the new segment is the one the corrective clicks refine next; Apply dropped its clicks
            name = (p.targetSegmentName or "").strip() or "Object"
            segmentId = p.outputSegmentation.GetSegmentation().GetSegmentIdBySegmentName(name)
            self.ui.refineSegmentSelector.setCurrentSegmentID(segmentId)
            self._showClicks()
        self._updateCorrections()

    # --- corrective clicks ---------------------------------------------------------------------------------

    def _refineTarget(self) -> tuple:
        """(segmentation node, segment ID) the corrective clicks refine; (None, "") when none is chosen."""
        p = self._parameterNode
        segmentation = p.outputSegmentation if p else None
        segmentId = self.ui.refineSegmentSelector.currentSegmentID() if segmentation else ""
        return segmentation, segmentId or ""

    def onRefineSegmentChanged(self, segmentId) -> None:
        # The selector may announce the same segment again when the segmentation changes (after each click).
        if (segmentId or "") == self._refinedSegmentId:
            self._updateCorrections()
            return
        self._refinedSegmentId = segmentId or ""
        self._setClickMode(None)
        if self._parameterNode and self._parameterNode.refineSegmentId != (segmentId or ""):
            self._parameterNode.refineSegmentId = segmentId or ""
        self._showClicks()
        self._updateCorrections()

    def _followClickLists(self, addNode, removeNode) -> None:
        """Observe the refined segment's two click lists (and no others) for points placed in them."""
        for node, tag in self._clickListObservations:
            node.RemoveObserver(tag)
        self._clickListObservations = [
            (node, node.AddObserver(slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent, self.onClickPlaced))
            for node in (addNode, removeNode)
            if node is not None
        ]

    def _showClicks(self) -> None:
        """The click lists show the clicks stored on the refined segment (after undo, redo, Apply, a new choice)."""
        segmentation, segmentId = self._refineTarget()
        addNode, removeNode = self.logic.clickListNodes(segmentation, segmentId, create=False)
        self._followClickLists(addNode, removeNode)
        self.logic.showClicks(segmentation, segmentId, addNode, removeNode)

    def onClickMode(self, positive: bool, on: bool) -> None:
        """A mode button toggled: place add (object) or remove (not object) clicks, or stop placing."""
        button, other = (
            (self.ui.addClickButton, self.ui.removeClickButton)
            if positive
            else (self.ui.removeClickButton, self.ui.addClickButton)
        )
        if not on:
            if not other.checked:
                self._setClickMode(None)
            return
        other.blockSignals(True)
        other.checked = False
        other.blockSignals(False)
        segmentation, segmentId = self._refineTarget()
        addNode, removeNode = self.logic.clickListNodes(segmentation, segmentId)
        if addNode is None:
            button.checked = False
            self.ui.statusLabel.text = _("Select the segment to refine first.")
            return
        self._followClickLists(addNode, removeNode)
        self._setClickMode(addNode if positive else removeNode)

    def _toggleClickMode(self, positive: bool) -> None:
        """Shift+A / Shift+R: switch add or remove mode on or off."""
        button = self.ui.addClickButton if positive else self.ui.removeClickButton
        if button.enabled:
            button.checked = not button.checked

    def _placingClicks(self) -> bool:
        """Whether the views are placing points into the refined segment's click lists now."""
        appLogic = slicer.app.applicationLogic()
        interaction = appLogic.GetInteractionNode()
        ours = {node.GetID() for node, _tag in self._clickListObservations}
        placing = interaction.GetCurrentInteractionMode() == interaction.Place
        return placing and appLogic.GetSelectionNode().GetActivePlaceNodeID() in ours

    def _releaseClickButtons(self) -> None:
        for button in (self.ui.addClickButton, self.ui.removeClickButton):
            button.blockSignals(True)
            button.checked = False
            button.blockSignals(False)

    def _setClickMode(self, pointsNode) -> None:
        """Persistent place mode into ``pointsNode``; None: both buttons up, and the views back to their normal
        mode if they were placing clicks (another module's place mode is left alone)."""
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        self._switchingMode = True
        try:
            if pointsNode is None:
                self._releaseClickButtons()
                if self._placingClicks():
                    interaction.SwitchToViewTransformMode()
                return
            selection = slicer.app.applicationLogic().GetSelectionNode()
            selection.SetReferenceActivePlaceNodeClassName("vtkMRMLMarkupsFiducialNode")
            selection.SetActivePlaceNodeID(pointsNode.GetID())
            interaction.SetPlaceModePersistence(1)
            interaction.SetCurrentInteractionMode(interaction.Place)
        finally:
            self._switchingMode = False

    def onInteractionModeChanged(self, caller, event) -> None:
        """Right-click or Esc in a view ended place mode, or another tool places its own points: the mode
        buttons follow."""
        if self._switchingMode or self._placingClicks():
            return
        self._releaseClickButtons()

    def onClickPlaced(self, caller, event) -> None:
        # Handled once the markups widget has finished placing the point (the event comes while it places it).
        import qt

        self._pendingClickList = caller
        qt.QTimer.singleShot(0, self._applyPendingClick)

    def _applyPendingClick(self) -> None:
        from WeakAnnotateDesktop.status import showing_input_errors

        pointsNode, self._pendingClickList = self._pendingClickList, None
        index = self.logic.placedClickIndex(pointsNode) if pointsNode is not None else None
        if index is None:
            return
        p = self._parameterNode
        segmentation, segmentId = self._refineTarget()
        self.ui.statusLabel.text = _("Correcting…")
        slicer.app.processEvents()
        with showing_input_errors(self.ui.statusLabel, _("Corrective click failed."), wait_cursor=True):
            self.ui.statusLabel.text = self.logic.placeClick(
                p.inputVolume if p else None, segmentation, segmentId, pointsNode, index
            )
        self._updateCorrections()

    def onUndoClick(self) -> None:
        if not self.logic.undo(slicer.mrmlScene, self._refineTarget()[0]):
            self.ui.statusLabel.text = _("Nothing to undo.")

    def onRedoClick(self) -> None:
        if not self.logic.redo(slicer.mrmlScene, self._refineTarget()[0]):
            self.ui.statusLabel.text = _("Nothing to redo.")

    def onUndoRedo(self, caller, event) -> None:
        """The scene's undo or redo (from this panel, Ctrl+Z / Ctrl+Y or the Python console): the click lists and
        the counts follow the segment's stored clicks."""
        self._showClicks()
        self._updateCorrections()
        segmentation, segmentId = self._refineTarget()
        count = len(self.logic.correctiveClicks(segmentation, segmentId))
        self.ui.statusLabel.text = _("Segment back to {count} corrective clicks.").format(count=count)

    def _updateCorrections(self) -> None:
        """Enable the corrections' buttons and say how many clicks the refined segment holds."""
        if self.logic is None:
            return
        p = self._parameterNode
        segmentation, segmentId = self._refineTarget()
        ready = bool(p and p.inputVolume and segmentation and segmentId)
        self.ui.addClickButton.enabled = ready
        self.ui.removeClickButton.enabled = ready
        scene = slicer.mrmlScene
        self.ui.undoClickButton.enabled = scene.GetNumberOfUndoLevels() > 0
        self.ui.redoClickButton.enabled = scene.GetNumberOfRedoLevels() > 0
        if not ready:
            self.ui.clicksLabel.text = _("Select an input volume, the output segmentation and a segment to refine.")
            return
        clicks = self.logic.correctiveClicks(segmentation, segmentId)
        added = sum(1 for c in clicks if c.positive)
        self.ui.clicksLabel.text = _(
            "{count} corrective clicks on this segment ({added} add, {removed} remove). Shift+A: add mode, "
            "Shift+R: remove mode, Ctrl+Z / Ctrl+Y: undo / redo a click."
        ).format(count=len(clicks), added=added, removed=len(clicks) - added)

    def _installShortcuts(self) -> None:
        """The panel's keys, while it is shown: Shift+A / Shift+R toggle add / remove mode, Ctrl+Z undoes and
        Ctrl+Y (or Ctrl+Shift+Z) redoes one click (desktop Slicer binds no key to the scene's undo itself)."""
        import qt

        self._removeShortcuts()
        for key, slot in (
            ("Shift+A", lambda: self._toggleClickMode(True)),
            ("Shift+R", lambda: self._toggleClickMode(False)),
            ("Ctrl+Z", self.onUndoClick),
            ("Ctrl+Y", self.onRedoClick),
            ("Ctrl+Shift+Z", self.onRedoClick),
        ):
            shortcut = qt.QShortcut(qt.QKeySequence(key), slicer.util.mainWindow())
            shortcut.connect("activated()", slot)
            self._shortcuts.append(shortcut)

    def _removeShortcuts(self) -> None:
        for shortcut in self._shortcuts:
            shortcut.disconnect("activated()")
            shortcut.setParent(None)
        self._shortcuts = []

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
    # The point lists that show a segment's corrective clicks: attribute -> "<segmentation ID>/<segment ID>".
    CLICKS_OF_ATTRIBUTE = "WeakAnnotate.CorrectiveClicksOf"
    CLICK_SIGN_ATTRIBUTE = "WeakAnnotate.CorrectiveClickSign"  # "add" or "remove"

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        # (segmentation ID, segment ID, volume ID) -> the click series being made on that segment: its
        # CorrectionSession (base segment, warm start) and the digest of the mask after each prefix of its clicks,
        # so that a segment the scene's undo brought back to an earlier click is recognised as such.
        self._series: dict = {}
        self.lastCorrection = None  # the CorrectionResult of the last click (its diagnostics: timings, warm start)

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

        from WeakAnnotateLib.core.errors import InputError
        from WeakAnnotateLib.evaluation.simulate import axis_end_names
        from WeakAnnotateLib.scene.mrml_adapter import geometry_of_node

        if inputVolume is None or inputVolume.GetImageData() is None:
            raise InputError(_("Select an input volume with image data."))
        if outputSegmentation is None:
            raise InputError(_("Select or create an output segmentation."))
        if extremePoints is None:
            raise InputError(_("Select or create the point list holding the six extreme points."))
        name = (targetSegmentName or "").strip() or "Object"
        start = time.perf_counter()
        _segmentId, result = self._segmentFromPoints(inputVolume, extremePoints, outputSegmentation, name)
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

    def _segmentFromPoints(self, inputVolume, extremePoints, outputSegmentation, name: str):
        """segment_from_nodes as one undo step that also starts the segment's click series afresh: the segment is
        the six points' result again, so the corrective clicks stored on it no longer apply and are dropped."""
        from WeakAnnotateLib.core.colors import segment_color
        from WeakAnnotateLib.methods.extreme_points.corrective import CLICKS_TAG, CorrectionSession
        from WeakAnnotateLib.methods.extreme_points.segmenter import segment_from_nodes
        from WeakAnnotateLib.scene.mrml_adapter import image_of_node
        from WeakAnnotateLib.scene.slicer_runtime import get_runtime

        self.enableUndo(outputSegmentation)
        segmentId, result = segment_from_nodes(
            get_runtime(), inputVolume, extremePoints, outputSegmentation, name, segment_color(name)
        )
        # After segment_from_nodes' own undo snapshot, so Ctrl+Z brings back the segment with its clicks.
        outputSegmentation.GetSegmentation().GetSegment(segmentId).RemoveTag(CLICKS_TAG)
        image = image_of_node(inputVolume)
        # The base a later click corrects is this result, with its intensity range: what correct_from_nodes
        # derives again from the stored six points (so the panel's clicks and the CLI's agree).
        session = CorrectionSession(
            image.array, image.geometry, result.mask, intensity_range=result.diagnostics["intensity_range"]
        )
        self._series[(outputSegmentation.GetID(), segmentId, inputVolume.GetID())] = {
            "session": session,
            "states": {(): _maskDigest(result.mask)},
        }
        return segmentId, result

    # --- corrective clicks -------------------------------------------------------------------------------

    def enableUndo(self, *nodes) -> None:
        """Turn the scene's undo on and keep ``nodes`` in its snapshots: each click (and each Apply) is then one
        undo step, which Ctrl+Z / Ctrl+Y (the panel's shortcuts) or ``scene.Undo()`` / ``Redo()`` take back and
        re-apply. The click point lists are left out: they show the clicks stored on the segment and are rebuilt
        from them after an undo (``showClicks``)."""
        for node in nodes:
            if node is None:
                continue
            scene = node.GetScene()
            if scene is not None and not scene.GetUndoFlag():
                scene.SetUndoOn()
            if not node.GetUndoEnabled():
                node.SetUndoEnabled(True)

    def undo(self, scene=None, segmentationNode=None) -> bool:
        """Take back the last undoable action (a click); False when there was none.

        With ``segmentationNode``: the last action that changed it. Once the scene's undo is on, Slicer's views
        save undo states of their own (a slice view's pan, a point jumped to); those change nothing in the
        segmentation and are passed over, so that one Ctrl+Z is one click.
        """
        return self._undoOrRedo(scene, segmentationNode, redo=False)

    def redo(self, scene=None, segmentationNode=None) -> bool:
        """Re-apply the last action taken back (with ``segmentationNode``: the next one that changes it)."""
        return self._undoOrRedo(scene, segmentationNode, redo=True)

    def _undoOrRedo(self, scene, segmentationNode, redo: bool) -> bool:
        scene = scene or slicer.mrmlScene
        levels = scene.GetNumberOfRedoLevels if redo else scene.GetNumberOfUndoLevels
        if not levels():
            return False
        before = _segmentationState(segmentationNode)
        while levels():
            scene.Redo() if redo else scene.Undo()
            if segmentationNode is None or _segmentationState(segmentationNode) != before:
                return True
        return False  # only states that changed nothing in the segmentation

    def correctiveClicks(self, segmentationNode, segmentId: str) -> list:
        """The corrective clicks stored on the segment (``Click`` objects: ``point`` RAS, ``positive``), in order."""
        from WeakAnnotateLib.methods.extreme_points.corrective import stored_clicks

        if segmentationNode is None or not segmentId:
            return []
        return stored_clicks(segmentationNode, segmentId)

    def _checkRefineInputs(self, inputVolume, segmentationNode, segmentId: str) -> None:
        from WeakAnnotateLib.core.errors import InputError

        if inputVolume is None or inputVolume.GetImageData() is None:
            raise InputError(_("Select an input volume with image data."))
        if segmentationNode is None:
            raise InputError(_("Select the segmentation that holds the segment to refine."))
        if not segmentId or segmentationNode.GetSegmentation().GetSegment(segmentId) is None:
            raise InputError(_("Select the segment to refine (any segment of the segmentation)."))

    def addCorrectiveClick(self, inputVolume, segmentationNode, segmentId: str, point, positive: bool) -> str:
        """One corrective click at RAS ``point`` ("this is object" when ``positive``, else "this is not"): the
        segment is updated in place from all of its clicks so far plus this one, the clicks are stored on it (tag
        ``WeakAnnotate.CorrectiveClicks``), and the change is one undo step. Returns a one-line summary.

        Works on any segment: one from six points (its base is the six points' result), a template, a box, a
        model's prediction or one painted by hand (its base is the segment as it is at its first click). A segment
        changed outside this panel since its last click starts a new series from what it is now. Bad input (a
        click outside the image, negative clicks that would remove all of the segment, only negative clicks on an
        empty segment) raises InputError and leaves the scene unchanged.
        """
        import time

        import numpy as np
        from WeakAnnotateLib.core.errors import InputError
        from WeakAnnotateLib.methods.extreme_points.corrective import (
            Click,
            CorrectionSession,
            correct_from_nodes,
            stored_clicks,
        )
        from WeakAnnotateLib.scene.mrml_adapter import geometry_of_node, image_of_node, segment_mask
        from WeakAnnotateLib.scene.slicer_runtime import get_runtime

        self._checkRefineInputs(inputVolume, segmentationNode, segmentId)
        geometry = geometry_of_node(inputVolume)
        click = Click.make(point, positive)
        if not np.all(np.isfinite(click.point)) or not geometry.contains(np.array([click.point]))[0]:
            raise InputError(
                _(
                    "The click at RAS ({x:.1f}, {y:.1f}, {z:.1f}) mm is outside the image '{volume}': click on the "
                    "image to correct the segment. Nothing was changed."
                ).format(x=click.point[0], y=click.point[1], z=click.point[2], volume=inputVolume.GetName())
            )
        start = time.perf_counter()
        before = stored_clicks(segmentationNode, segmentId)
        current = segment_mask(segmentationNode, segmentId, geometry)
        key = (segmentationNode.GetID(), segmentId, inputVolume.GetID())
        series = self._series.get(key)
        restarted = False
        if series is not None and series["states"].get(tuple(before)) != _maskDigest(current):
            # Painted, re-made or edited elsewhere since its last click: the clicks start again from it as it is.
            image = image_of_node(inputVolume)
            series = {
                "session": CorrectionSession(image.array, image.geometry, current),
                "states": {(): _maskDigest(current)},
            }
            before, restarted = [], True
        clicks = [*before, click]
        self.enableUndo(segmentationNode)
        _segmentId, result, session = correct_from_nodes(
            get_runtime(),
            inputVolume,
            segmentationNode,
            segmentId,
            clicks,
            session=series["session"] if series is not None else None,
        )
        if series is None:  # the first click here: correct_from_nodes chose the base (the six points', or as it is)
            series = {"session": session, "states": {(): _maskDigest(session.base)}}
        series["states"][tuple(clicks)] = _maskDigest(result.mask)
        self._series[key] = series
        self.lastCorrection = result
        seconds = time.perf_counter() - start
        voxelMl = float(geometry.spacing.prod()) / 1000.0
        name = segmentationNode.GetSegmentation().GetSegment(segmentId).GetName()
        added, removed = sum(c.positive for c in clicks), sum(not c.positive for c in clicks)
        text = _(
            "Segment '{name}': {volume:.1f} ml ({change:+.1f} ml) after click {count} ({added} add, {removed} "
            "remove) in {seconds:.2f} s. Ctrl+Z takes it back."
        ).format(
            name=name,
            volume=float(result.mask.sum()) * voxelMl,
            change=float(result.mask.sum() - current.sum()) * voxelMl,
            count=len(clicks),
            added=added,
            removed=removed,
            seconds=seconds,
        )
        if restarted:
            text += " " + _("The segment had changed since its last click: the clicks start again from it as it is.")
        return text

    def clickListNodes(self, segmentationNode, segmentId: str, create: bool = True) -> tuple:
        """The two point lists showing a segment's clicks, (add, remove); created when missing and ``create``."""
        if segmentationNode is None or not segmentId:
            return None, None
        scene = segmentationNode.GetScene()
        owner = f"{segmentationNode.GetID()}/{segmentId}"
        found = {}
        for n in range(scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode")):
            node = scene.GetNthNodeByClass(n, "vtkMRMLMarkupsFiducialNode")
            if node.GetAttribute(self.CLICKS_OF_ATTRIBUTE) == owner:
                found[node.GetAttribute(self.CLICK_SIGN_ATTRIBUTE)] = node
        if create:
            segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
            segmentName = segment.GetName() if segment is not None else segmentId
            for sign, color, what in (
                ("add", (0.1, 0.9, 0.2), _("add clicks")),
                ("remove", (1.0, 0.2, 0.2), _("remove clicks")),
            ):
                if sign in found:
                    continue
                node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"{segmentName} {what}")
                node.CreateDefaultDisplayNodes()
                node.SetAttribute(self.CLICKS_OF_ATTRIBUTE, owner)
                node.SetAttribute(self.CLICK_SIGN_ATTRIBUTE, sign)
                display = node.GetDisplayNode()
                if display is not None:
                    display.SetSelectedColor(*color)
                    display.SetColor(*color)
                found[sign] = node
        return found.get("add"), found.get("remove")

    def showClicks(self, segmentationNode, segmentId: str, addNode, removeNode) -> int:
        """Rebuild the two point lists from the clicks stored on the segment (after an undo, a redo, a refused
        click or another segment chosen); each point labelled by its place in the order (+1, -2, ...)."""
        import vtk

        clicks = self.correctiveClicks(segmentationNode, segmentId)
        for node, positive in ((addNode, True), (removeNode, False)):
            if node is None:
                continue
            wasModifying = node.StartModify()
            node.RemoveAllControlPoints()
            for n, click in enumerate(clicks):
                if click.positive == positive:
                    index = node.AddControlPoint(vtk.vtkVector3d(*click.point), _clickLabel(n, positive))
                    node.SetNthControlPointLocked(index, True)  # moving it would not move the click
            node.EndModify(wasModifying)
        return len(clicks)

    def placedClickIndex(self, pointsNode):
        """The index of the point just placed in a click list (the last placed point that is not yet a labelled
        click), or None."""
        import re

        for index in range(pointsNode.GetNumberOfControlPoints() - 1, -1, -1):
            if pointsNode.GetNthControlPointPositionStatus(index) != pointsNode.PositionDefined:
                continue  # the preview point that follows the mouse in place mode
            if not re.fullmatch(r"[+-]\d+", pointsNode.GetNthControlPointLabel(index)):
                return index
        return None

    def placeClick(self, inputVolume, segmentationNode, segmentId: str, pointsNode, index: int) -> str:
        """The point ``index`` just placed in one of the segment's click lists is a corrective click (its sign
        that of the list): the segment is updated; on bad input the point is removed again and InputError raised."""
        from WeakAnnotateLib.core.errors import InputError

        positive = pointsNode.GetAttribute(self.CLICK_SIGN_ATTRIBUTE) != "remove"
        position = [0.0, 0.0, 0.0]
        pointsNode.GetNthControlPointPositionWorld(index, position)
        try:
            text = self.addCorrectiveClick(inputVolume, segmentationNode, segmentId, position, positive)
        except InputError:
            pointsNode.RemoveNthControlPoint(index)
            raise
        pointsNode.SetNthControlPointLabel(
            index, _clickLabel(len(self.correctiveClicks(segmentationNode, segmentId)) - 1, positive)
        )
        pointsNode.SetNthControlPointLocked(index, True)  # moving it would not move the click: undo takes it back
        return text

    def showProbability(self, inputVolume, result, show: bool, segmentName: str) -> None:
        """Create or update '<segment> probability' and show it over the image (or hide it)."""
        from WeakAnnotateLib.files.image_io import Image
        from WeakAnnotateLib.scene.mrml_adapter import add_volume_node, geometry_of_node
        from WeakAnnotateLib.scene.slicer_runtime import get_runtime

        nodeName = f"{segmentName} probability"
        node = inputVolume.GetScene().GetFirstNodeByName(nodeName)
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


def _maskDigest(mask) -> str:
    """A mask's shape and a hash of its bits: what a segment's state is recognised by (masks can be large)."""
    import hashlib

    import numpy as np

    return f"{mask.shape}:" + hashlib.sha1(np.packbits(np.asarray(mask, bool)).tobytes()).hexdigest()


def _segmentationState(segmentationNode):
    """What a segmentation shows, per segment: its name, its clicks tag and a hash of its voxels (None: no node)."""
    if segmentationNode is None:
        return None
    import hashlib

    import vtk
    from vtk.util import numpy_support

    segmentation = segmentationNode.GetSegmentation()
    state = []
    for n in range(segmentation.GetNumberOfSegments()):
        segmentId = segmentation.GetNthSegmentID(n)
        segment = segmentation.GetSegment(segmentId)
        tag = vtk.reference("")
        segment.GetTag("WeakAnnotate.CorrectiveClicks", tag)
        labelmap = slicer.vtkOrientedImageData()
        segmentationNode.GetBinaryLabelmapRepresentation(segmentId, labelmap)
        scalars = labelmap.GetPointData().GetScalars()
        voxels = numpy_support.vtk_to_numpy(scalars).tobytes() if scalars is not None else b""
        state.append((segmentId, segment.GetName(), str(tag), labelmap.GetExtent(), hashlib.sha1(voxels).hexdigest()))
    return state


def _clickLabel(n: int, positive: bool) -> str:
    """A click's label: its place in the order, signed (+1 add, -2 remove)."""
    return f"{'+' if positive else '-'}{n + 1}"


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
