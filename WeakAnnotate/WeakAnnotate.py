import qt
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
# WeakAnnotate
#


def registerSampleData():
    """Add the extension's phantom to the Sample Data module: files shipped in Resources/SampleData, no download
    (WeakAnnotateDesktop.sample_data; standard library only, so it works before the dependencies are installed)."""
    from WeakAnnotateDesktop.sample_data import register_sample_data

    register_sample_data()


class WeakAnnotate(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("WeakAnnotate")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation") + ".WeakAnnotate"]
        self.parent.dependencies = []
        self.parent.contributors = ["WeakAnnotate developers"]
        self.parent.helpText = _("""
The hub of the WeakAnnotate extension: turn cheap annotations (six extreme points, a 3D box, a few surface
points, boxes around PET lesions) into 3D segmentations and trained networks. The annotation modules are
Extreme Point Segmentation, Box Correction and Surface Template; this module evaluates a segmentation against a
reference (Dice, IoU, 95th-percentile Hausdorff distance and average surface distance, in mm), and trains networks
from a dataset folder in a background process (start, watch loss and validation Dice, cancel, resume), lists the
trained models with their metrics and applies one to the current volume as a segment.
""")
        self.parent.acknowledgementText = _("""
WeakAnnotate implements weakly supervised segmentation from extreme points (paper:
extreme_points_random_walker), from boxes (papers: box_correction, tightness_prior_logbarrier) and from surface
points (paper: surface_points_weaknet); the hub trains PET lesion segmentation from boxes with a modified Dice
and a Mumford-Shah level-set loss (paper: pet_boxes_mumford_shah; Afshari, BenTaieb, Mirikharaji and Hamarneh,
"Weakly Supervised Fully Convolutional Network for PET Lesion Segmentation").
""")
        # The sample data (for the self-tests, and to try the modules) once Slicer has started: SampleData is loaded.
        slicer.app.connect("startupCompleted()", registerSampleData)


#
# WeakAnnotateParameterNode
#


@parameterNodeWrapper
class WeakAnnotateParameterNode:
    """
    inputVolume - The volume whose grid the segmentations are compared on.
    referenceSegmentation - The reference segmentation (its first segment is used).
    predictionSegmentation - The segmentation to evaluate (its first segment is used).
    datasetFolder - The dataset folder (dataset.json) that training uses; jobs go to its jobs/ subfolder.
    trainingMethod - The training method's name (the method combo box, filled from the method registry,
        shows titles and keeps names as item data, so the panel sets this field itself; "" = the registry's
        first).
    methodOptions - JSON {method: {field: value}}: what the method form holds for each method (set by the
        panel), so that switching methods loses nothing and the scene keeps it.
    epochs, learningRate, patchSize, batchSize, device - The fields every method's job shares: kept in the
        scene so that they are visible and persist (written into every job spec).
    applyPoints - Six clicks that give the crop (and the points channel) when a model is applied.
    loopStrategy, loopFinetuneEvery, loopTta, loopStart - The annotation loop's settings: which case next (order,
        random, disagreement), fine-tune every N accepted cases, the flip test-time augmentation in the
        disagreement score, and what a case starts from (auto, model, marks); N and the start are also written
        to the dataset's loop.json.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    referenceSegmentation: vtkMRMLSegmentationNode
    predictionSegmentation: vtkMRMLSegmentationNode
    datasetFolder: str = ""
    trainingMethod: str = ""
    methodOptions: str = ""
    epochs: int = 10
    learningRate: float = 0.001
    patchSize: int = 32
    batchSize: int = 2
    device: str = "auto"
    applyPoints: vtkMRMLMarkupsFiducialNode
    loopStrategy: str = "order"
    loopFinetuneEvery: int = 5
    loopTta: bool = False
    loopStart: str = "auto"


#
# WeakAnnotateWidget
#


def _rounded(value, digits: int = 3):
    """A table cell's number to ``digits`` decimals (None stays None: shown as a dash)."""
    return None if value is None else round(float(value), digits)


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
        self._job = None  # TrainingJob of the last started job
        self._jobEpochs = 1
        self._shownDataset = None
        self._poller = None  # WeakAnnotateDesktop.jobs.JobPoller
        self._methodForm = None  # WeakAnnotateDesktop.method_form.MethodForm
        self._formOptions = None  # the methodOptions text the form was last shown from or wrote

    def setup(self) -> None:
        from WeakAnnotateDesktop.first_run import dependencies_ready

        ScriptedLoadableModuleWidget.setup(self)
        # First use in desktop Slicer: while Python packages are missing the panel says which, installs them (asked
        # once) and reloads the module; nothing below runs until then (it needs them).
        if not dependencies_ready(self, "WeakAnnotate"):
            return
        from WeakAnnotateDesktop.jobs import JobPoller
        from WeakAnnotateDesktop.method_form import MethodForm
        from WeakAnnotateLib.methods import registry

        # Load widget from .ui file (created by Qt Designer).
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/WeakAnnotate.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = WeakAnnotateLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        # Every training method of the registry, by title; its name is the item's data.
        for info in registry.training_methods():
            self.ui.methodComboBox.addItem(info.title, info.name)
            self.ui.methodComboBox.setItemData(self.ui.methodComboBox.count - 1, info.help, qt.Qt.ToolTipRole)
        self._methodForm = MethodForm(self.ui.methodOptionsGroupBox.layout(), self.onMethodOptionsEdited)

        self.ui.evaluateButton.connect("clicked(bool)", self.onEvaluateButton)
        self.ui.browseDatasetButton.connect("clicked(bool)", self.onBrowseDataset)
        self.ui.pseudoLabelButton.connect("clicked(bool)", self.onPseudoLabel)
        self.ui.methodComboBox.connect("currentIndexChanged(int)", self.onMethodSelected)
        self.ui.startTrainingButton.connect("clicked(bool)", self.onStartTraining)
        self.ui.cancelTrainingButton.connect("clicked(bool)", self.onCancelTraining)
        self.ui.resumeTrainingButton.connect("clicked(bool)", self.onResumeTraining)
        self.ui.applyModelButton.connect("clicked(bool)", self.onApplyModel)
        self.ui.modelsTable.connect("itemSelectionChanged()", self._checkCanApply)
        from WeakAnnotateLib.jobs.annotation_loop import START_CHOICES, STRATEGIES

        for strategy in STRATEGIES:
            self.ui.loopStrategyComboBox.addItem(strategy)
        self.ui.loopStrategyComboBox.connect("currentIndexChanged(int)", self.onLoopStrategy)
        for index, (start, meaning) in enumerate(START_CHOICES.items()):
            self.ui.loopStartComboBox.addItem(start)
            self.ui.loopStartComboBox.setItemData(index, meaning, qt.Qt.ToolTipRole)
        self.ui.loopStartComboBox.connect("currentIndexChanged(int)", self.onLoopStart)
        self.ui.loopRankButton.connect("clicked(bool)", self.onLoopRank)
        self.ui.loopNextButton.connect("clicked(bool)", self.onLoopNext)
        self.ui.loopAcceptButton.connect("clicked(bool)", self.onLoopAccept)
        self.ui.trainingLogText.setVisible(False)
        self.ui.lesionsTable.setVisible(False)  # shown after a PET model is applied

        # Everything slow runs elsewhere (training and pseudo-label jobs, the prediction thread); the poller's
        # timer only reads what they reported, so the GUI never waits for them.
        self._poller = JobPoller(500)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self._saveLoopDraft()
        if self._poller:
            self._poller.stop()
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
        self._saveLoopDraft()  # the loop's case in progress: its corrections so far, for the next "Next case"
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
        self._formOptions = None  # another node: show its method and values
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        from WeakAnnotateDesktop.method_options import shares_common_fields

        p = self._parameterNode
        if p and p.datasetFolder != self._shownDataset:
            self._shownDataset = p.datasetFolder
            self.refreshDataset()
        info = self._showMethod()
        running = bool(self._job and self._job.running)
        self.ui.startTrainingButton.enabled = bool(p and p.datasetFolder and info) and not running
        self.ui.cancelTrainingButton.enabled = running
        self.ui.resumeTrainingButton.enabled = bool(
            self._job and not running and self._job.state in ("cancelled", "failed") and self.logic.canResume(self._job)
        )
        # A standalone job (its own spec) has every setting in the method form; the common fields do not apply.
        shared = bool(info and shares_common_fields(info))
        for widget in (
            self.ui.epochsSpinBox,
            self.ui.learningRateSpinBox,
            self.ui.patchSizeSpinBox,
            self.ui.batchSizeSpinBox,
            self.ui.deviceLineEdit,
        ):
            widget.enabled = shared
        labelling = self.logic.pseudoLabelMethod(p.trainingMethod) if p else ""
        self.ui.pseudoLabelButton.enabled = bool(p and p.datasetFolder and labelling) and not self.logic.pseudoLabelling
        self.ui.pseudoLabelButton.toolTip = (
            _("Pseudo-label every case's {annotation} annotation, in a background job.").format(
                annotation=labelling.replace("_", " ")
            )
            if labelling
            else _("The chosen training method's annotation makes no pseudo-labels.")
        )
        self.ui.applyModelButton.enabled = bool(p and p.inputVolume and self._selectedModel())
        self.ui.loopNextButton.enabled = bool(p and p.datasetFolder) and not self.logic.loopPending
        self.ui.loopRankButton.enabled = bool(p and p.datasetFolder) and not self.logic.loopPending
        self.ui.loopAcceptButton.enabled = self.logic.loopCase is not None and not self.logic.loopPending
        if p and self.ui.loopStrategyComboBox.currentText != p.loopStrategy:
            self.ui.loopStrategyComboBox.setCurrentText(p.loopStrategy)
        if p and self.ui.loopStartComboBox.currentText != p.loopStart:
            self.ui.loopStartComboBox.setCurrentText(p.loopStart)
        if p and p.inputVolume and p.referenceSegmentation and p.predictionSegmentation:
            self.ui.evaluateButton.toolTip = _("Compare the prediction's first segment with the reference's.")
            self.ui.evaluateButton.enabled = True
        else:
            self.ui.evaluateButton.toolTip = _("Select a volume, a reference and a prediction segmentation.")
            self.ui.evaluateButton.enabled = False

    def onEvaluateButton(self) -> None:
        """Compare the prediction with the reference when the user clicks "Evaluate"."""
        from WeakAnnotateDesktop.status import showing_input_errors

        p = self._parameterNode
        self.ui.statusLabel.text = ""
        self.ui.resultsLabel.text = ""
        with showing_input_errors(self.ui.statusLabel, _("Evaluation failed."), wait_cursor=True):
            results = self.logic.evaluate(p.inputVolume, p.referenceSegmentation, p.predictionSegmentation)
            self.ui.resultsLabel.text = self.logic.resultsTable(results)
            self.ui.statusLabel.text = _("Evaluated.")

    # --- the training method and its own fields ---------------------------------------------------------

    def _showMethod(self):
        """Bring the method combo box and form in line with the parameter node; the method's registry entry."""
        from WeakAnnotateDesktop.method_options import form_values, read_store
        from WeakAnnotateLib.methods import registry

        p = self._parameterNode
        if p is None:
            return None
        combo = self.ui.methodComboBox
        index = combo.findData(p.trainingMethod)
        if index < 0:  # none yet, or one this version does not have (an older scene): the registry's first
            index = 0
            p.trainingMethod = combo.itemData(index)  # observed: a nested call shows it; this one goes on alike
        if combo.currentIndex != index:
            wasBlocked = combo.blockSignals(True)
            combo.currentIndex = index
            combo.blockSignals(wasBlocked)
        info = registry.training_method(combo.itemData(index))
        if self._methodForm.method != info.name or self._formOptions != p.methodOptions:
            kept = read_store(p.methodOptions).get(info.name, {})
            self._methodForm.show(info.name, info.fields(), form_values(info.fields(), kept))
            self._formOptions = p.methodOptions
            text = info.help
            if info.standalone:
                text += " " + _("It runs its own job: all its settings are its options below.")
            if info.reference:
                text += " " + _("It trains on the cases' reference masks, not on weak marks.")
            self.ui.methodHelpLabel.text = text
            self.ui.methodOptionsGroupBox.title = _("{method}: options").format(method=info.title)
            self.ui.methodOptionsGroupBox.visible = bool(info.fields())
        return info

    def onMethodSelected(self, index: int) -> None:
        name = self.ui.methodComboBox.itemData(index)
        if self._parameterNode and name and self._parameterNode.trainingMethod != name:
            self._parameterNode.trainingMethod = name

    def onMethodOptionsEdited(self) -> None:
        """Keep the form's values of this method in the parameter node (parsed and checked only at Start)."""
        from WeakAnnotateDesktop.method_options import write_store

        p = self._parameterNode
        if p is None or self._methodForm.method is None:
            return
        self._formOptions = write_store(p.methodOptions, self._methodForm.method, self._methodForm.values())
        p.methodOptions = self._formOptions

    # --- dataset ---------------------------------------------------------------------------------------

    def onBrowseDataset(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(
            slicer.util.mainWindow(), _("Dataset folder"), self._parameterNode.datasetFolder or ""
        )
        if folder:
            self._parameterNode.datasetFolder = folder

    def refreshDataset(self) -> None:
        """Fill the cases and models tables from the dataset folder (cheap: reads dataset.json and model.json)."""
        from WeakAnnotateDesktop.status import showing_input_errors

        folder = self._parameterNode.datasetFolder if self._parameterNode else ""
        cases, models = [], []
        if folder:
            with showing_input_errors(self.ui.trainingStatusLabel):
                cases = self.logic.caseRows(folder)
                models = self.logic.modelRows(folder)
        self._fillTable(
            self.ui.casesTable,
            ["Case", "State", "Clicks", "Seconds"],
            [[c["id"], c["state"], str(c["clicks"]), f"{c['seconds']:.0f}"] for c in cases],
        )
        self._models = models
        self._fillTable(
            self.ui.modelsTable,
            ["Model", "Method", "Val. Dice", "Epochs", "Created"],
            [[m["name"], m["method"], m["dice"], str(m["epochs"]), m["created"]] for m in models],
        )

    @staticmethod
    def _fillTable(table, headers, rows) -> None:
        table.clear()
        table.setColumnCount(len(headers))
        table.setHorizontalHeaderLabels(headers)
        table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                item = qt.QTableWidgetItem()
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    item.setData(qt.Qt.DisplayRole, value)  # a number sorts as a number (text: "10" < "9")
                else:
                    item.setText("–" if value is None else str(value))
                table.setItem(r, c, item)
        table.resizeColumnsToContents()

    def _selectedModel(self):
        rows = {index.row() for index in self.ui.modelsTable.selectedIndexes()}
        models = getattr(self, "_models", [])
        if len(rows) == 1 and min(rows) < len(models):
            return models[min(rows)]["path"]
        return None

    def onPseudoLabel(self) -> None:
        from WeakAnnotateDesktop.status import showing_input_errors

        p = self._parameterNode
        with showing_input_errors(self.ui.trainingStatusLabel):
            job = self.logic.startPseudoLabelling(p.datasetFolder, self.logic.pseudoLabelMethod(p.trainingMethod))
            self.ui.trainingStatusLabel.text = _("Pseudo-labelling the dataset in the background…")
            self._poller.watch_job(job, self._showPseudoLabelEvent, self._pseudoLabellingEnded)
        self._checkCanApply()

    def _showPseudoLabelEvent(self, event: dict) -> None:
        self.ui.trainingStatusLabel.text = self.logic.pseudoLabelText(event)

    def _pseudoLabellingEnded(self, job) -> None:
        self.refreshDataset()
        self._checkCanApply()

    # --- training --------------------------------------------------------------------------------------

    def onStartTraining(self) -> None:
        from WeakAnnotateDesktop.status import showing_input_errors

        self.ui.trainingLogText.setVisible(False)
        # Rejected before anything started: the message names the field, or what the dataset lacks.
        with showing_input_errors(self.ui.trainingStatusLabel):
            self._job = self.logic.startTraining(self._parameterNode)
            self._jobEpochs = 1
            self.logic.resetPlot()
            self.ui.trainingPlotWidget.setMRMLPlotViewNode(self.logic.plotViewNode)
            self.ui.trainingProgressBar.value = 0
            self.ui.trainingStatusLabel.text = _("Started {job}.").format(job=self._job.output.name)
            self._poller.watch_job(self._job, self._showEvent, self._trainingEnded)
        self._checkCanApply()

    def onCancelTraining(self) -> None:
        if self._job:
            self._job.cancel()
            self.ui.trainingStatusLabel.text = _("Cancelling after the current step…")

    def onResumeTraining(self) -> None:
        from WeakAnnotateDesktop.status import showing_input_errors

        with showing_input_errors(self.ui.trainingStatusLabel):
            self._job.resume()
            self.ui.trainingLogText.setVisible(False)
            self.ui.trainingStatusLabel.text = _("Resumed {job}.").format(job=self._job.output.name)
            self._poller.watch_job(self._job, self._showEvent, self._trainingEnded)
        self._checkCanApply()

    def _trainingEnded(self, job) -> None:
        self.refreshDataset()
        self._checkCanApply()

    def _showEvent(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "start":
            self._jobEpochs = max(int(event.get("epochs", 1)), 1)
            self.ui.trainingProgressBar.maximum = self._jobEpochs
        elif kind == "step":
            self.logic.addPlotPoint("loss", event["step"], event["loss"])
        elif kind == "epoch":
            self.ui.trainingProgressBar.value = event["epoch"]
            if event.get("val_dice") is not None:
                self.logic.addPlotPoint("dice", event["step"], event["val_dice"])
            self.ui.trainingStatusLabel.text = self.logic.epochText(event)
        elif kind == "round":
            self.ui.trainingStatusLabel.text += " — " + _("round {round_number} done (change {change:.3f})").format(
                round_number=event["round"], change=event["change"]
            )
        elif kind == "done":
            self.ui.trainingProgressBar.value = self.ui.trainingProgressBar.maximum
            dice = event.get("val_dice_native")
            self.ui.trainingStatusLabel.text = (
                _("Finished: validation Dice {dice:.3f}.").format(dice=dice) if dice else _("Finished.")
            )
        elif kind == "cancelled":
            self.ui.trainingStatusLabel.text = _(
                "Cancelled at epoch {epoch}; Resume continues after epoch {checkpoint}."
            ).format(epoch=event.get("epoch"), checkpoint=event.get("last_checkpoint_epoch") or 0)
        elif kind == "failed":
            self.ui.trainingStatusLabel.text = _("Training failed: {error}").format(error=event.get("error", ""))
            self.ui.trainingLogText.setPlainText(event.get("log_tail") or self._job.log_tail())
            self.ui.trainingLogText.setVisible(True)

    # --- prediction ------------------------------------------------------------------------------------

    def _showLesions(self, lesions) -> None:
        """PET models: the lesions (name, ml, SUVmax) in the table under the button; hidden otherwise."""
        self.ui.lesionsTable.setVisible(bool(lesions))
        self._fillTable(
            self.ui.lesionsTable,
            ["Lesion", "Volume (ml)", "SUVmax"],
            [[f"Lesion {les.index}", f"{les.volume_ml:.1f}", f"{les.suv_max:.2f}"] for les in lesions],
        )

    def onApplyModel(self) -> None:
        from WeakAnnotateDesktop.status import showing_input_errors

        model = self._selectedModel()
        with showing_input_errors(self.ui.statusLabel):
            self.logic.startPrediction(self._parameterNode.inputVolume, model, self._parameterNode.applyPoints)
            self.ui.applyModelButton.enabled = False
            self.ui.statusLabel.text = _("Predicting in the background…")
            self._showLesions([])
            self._poller.watch(self._pollPrediction)

    def _pollPrediction(self) -> bool:
        """Poller check: finish a prediction whose thread is done; True while one is still pending."""
        done = self.logic.finishPrediction()
        if done is not None:
            self.ui.applyModelButton.enabled = True
            self.ui.statusLabel.text = done
            self._showLesions(self.logic.lastLesions)
        return self.logic.predictionPending

    # --- annotation loop ---------------------------------------------------------------------------------

    def onLoopStrategy(self, index: int) -> None:
        text = self.ui.loopStrategyComboBox.currentText
        if self._parameterNode and text and self._parameterNode.loopStrategy != text:
            self._parameterNode.loopStrategy = text

    def onLoopStart(self, index: int) -> None:
        text = self.ui.loopStartComboBox.currentText
        if self._parameterNode and text and self._parameterNode.loopStart != text:
            self._parameterNode.loopStart = text

    def onLoopRank(self) -> None:
        from WeakAnnotateDesktop.status import showing_input_errors

        p = self._parameterNode
        with showing_input_errors(self.ui.loopStatusLabel):
            rows = self.logic.loopRanking(p.datasetFolder, p.loopStrategy, p.loopTta)
            self.ui.loopTable.setSortingEnabled(False)  # filled unsorted, then sortable by any header
            self._fillTable(
                self.ui.loopTable,
                [_("#"), _("Case"), _("Score"), _("Outside box"), _("Marks off (mm)")],
                [
                    [r["rank"], r["case"], *(_rounded(r.get(k)) for k in ("score", "outside_box", "points_off_mm"))]
                    for r in rows
                ],
            )
            self.ui.loopTable.setSortingEnabled(True)
            self.ui.loopStatusLabel.text = _("{count} cases left.").format(count=len(rows))

    def onLoopNext(self) -> None:
        from WeakAnnotateDesktop.status import showing_input_errors

        p = self._parameterNode
        with showing_input_errors(self.ui.loopStatusLabel):
            self._saveLoopDraft()
            self.logic.startLoopNext(p.datasetFolder, p.loopStrategy, p.loopTta, p.loopFinetuneEvery, p.loopStart)
            self.ui.loopStatusLabel.text = _("Opening the next case in the background…")
            self._checkCanApply()
            self._poller.watch(self._pollLoopNext)

    def _pollLoopNext(self) -> bool:
        done = self.logic.finishLoopNext()
        if done is not None:
            self.ui.loopStatusLabel.text = done
            case = self.logic.loopCase
            if case is not None and hasattr(slicer.util, "setSliceViewerLayers"):
                slicer.util.setSliceViewerLayers(background=case["volume"], fit=True)
            self._checkCanApply()
        return self.logic.loopPending

    def onLoopAccept(self) -> None:
        from WeakAnnotateDesktop.status import showing_input_errors

        p = self._parameterNode
        with showing_input_errors(self.ui.loopStatusLabel):
            self.ui.loopStatusLabel.text = self.logic.loopAccept(p.loopFinetuneEvery)
            self._checkCanApply()
            self.refreshDataset()
            if self.logic.loopJobRunning():
                self._poller.watch(self._pollLoopJob)

    def _pollLoopJob(self) -> bool:
        text, running = self.logic.loopJobText()
        if not running:
            self.ui.loopStatusLabel.text = text
        return running

    def _saveLoopDraft(self) -> None:
        try:
            self.logic.loopSaveDraft()
        except Exception as error:  # noqa: BLE001 - closing must go on; the start segment is on disk anyway
            print(_("The annotation loop's draft was not saved: {error}").format(error=error))


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
        self.plotViewNode = None
        self._plotTables = {}
        self.pseudoJob = None  # TrainingJob of the last pseudo-labels job
        self._prediction = None  # (thread, result dict)
        self.lastLesions = []  # PET models: pet_lesions.Lesion records of the last prediction, largest first
        self.lastWarnings = []  # PET models: SUV / modality warnings of the last prediction
        self.loopCase = None  # the annotation loop's open case: folder, case, volume, segmentation, segment
        self._loopNext = None  # (thread, result dict) of a "Next case" in progress
        self.loopFolder = ""  # the dataset of the last accepted case (its fine-tuning job is watched)

    def getParameterNode(self):
        return WeakAnnotateParameterNode(super().getParameterNode())

    def evaluate(self, volumeNode, referenceSegmentation, predictionSegmentation) -> dict:
        """Dice, IoU, HD95 (mm) and ASD (mm) of the prediction's first segment against the reference's,
        both resampled onto the volume's grid."""
        from WeakAnnotateLib.core.errors import InputError
        from WeakAnnotateLib.evaluation import metrics
        from WeakAnnotateLib.scene import mrml_adapter

        if volumeNode is None or volumeNode.GetImageData() is None:
            raise InputError(_("Select the volume whose grid the segmentations are compared on."))
        geometry = mrml_adapter.geometry_of_node(volumeNode)
        if referenceSegmentation is None:
            raise InputError(_("Select a reference segmentation."))
        if not mrml_adapter.segment_ids(referenceSegmentation):
            raise InputError(
                _("The reference segmentation {name} has no segment.").format(
                    name=repr(referenceSegmentation.GetName())
                )
            )
        if predictionSegmentation is None:
            raise InputError(_("Select a prediction segmentation."))
        if not mrml_adapter.segment_ids(predictionSegmentation):
            raise InputError(
                _("The prediction segmentation {name} has no segment.").format(
                    name=repr(predictionSegmentation.GetName())
                )
            )
        masks = [
            mrml_adapter.segment_mask(node, mrml_adapter.segment_ids(node)[0], geometry)
            for node in (referenceSegmentation, predictionSegmentation)
        ]
        return metrics.evaluate_masks(masks[0], masks[1], geometry)

    # --- datasets and models ---------------------------------------------------------------------------

    @staticmethod
    def caseRows(folder: str) -> list:
        from WeakAnnotateLib.data.dataset import DatasetFolder

        return DatasetFolder.load(folder).summary()

    @staticmethod
    def modelRows(folder: str) -> list:
        """Finished models of the dataset's jobs folder: name, method, validation Dice, epochs, path."""
        import os

        from WeakAnnotateLib.networks.model_files import list_models

        rows = []
        for m in list_models(os.path.join(folder, "jobs")):
            val = m.get("validation", {})
            dice = val.get("dice_native", val.get("dice_crop"))
            rows.append(
                {
                    "name": m.get("name", ""),
                    "method": m.get("method", ""),
                    "dice": "n/a" if dice is None else f"{dice:.3f}",
                    "epochs": m.get("training", {}).get("epochs_completed", 0),
                    "created": m.get("created", "")[:16],
                    "path": m["path"],
                }
            )
        return rows

    @staticmethod
    def jobSpec(p) -> dict:
        """The job spec a panel's parameters describe: the common fields, and the chosen method's section with
        every field explicit (the form's values, else the descriptor's defaults), so that all is recorded.

        A list typed in the form that does not parse, or a value that does not fit its field, raises InputError
        naming the field.
        """
        import os

        from WeakAnnotateDesktop.method_options import read_store, section_values, shares_common_fields
        from WeakAnnotateLib.jobs.spec import job_document
        from WeakAnnotateLib.methods import registry

        info = registry.training_method(p.trainingMethod)
        section = section_values(info.fields(), read_store(p.methodOptions).get(info.name))
        common = {"dataset": os.path.abspath(p.datasetFolder), "output": "."}
        if shares_common_fields(info):
            size = int(p.patchSize)
            common.update(
                epochs=int(p.epochs),
                learning_rate=float(p.learningRate),
                patch_size=[size, size, size],
                batch_size=int(p.batchSize),
                device=p.device.strip(),
            )
        return job_document(info.name, common, section)

    @staticmethod
    def _checkedDataset(folder: str) -> str:
        """The dataset folder, absolute, once its dataset.json loads (nothing is written under a wrong path)."""
        import os

        from WeakAnnotateLib.core.errors import InputError
        from WeakAnnotateLib.data.dataset import DatasetFolder

        if not folder:
            raise InputError(_("dataset: choose a dataset folder first."))
        DatasetFolder.load(folder, field_name="dataset")
        return os.path.abspath(folder)

    @staticmethod
    def _startJob(spec: dict, path: str):
        """Write ``spec`` to ``path`` and start its TrainingJob; when the spec is refused (InputError) and the
        folder was new, the file and the folder are removed again."""
        import os

        from WeakAnnotateLib.core.errors import InputError
        from WeakAnnotateLib.jobs.runner import TrainingJob

        folder = os.path.dirname(path)
        created = not os.path.isdir(folder)
        path = TrainingJob.write_spec(spec, path)
        try:
            job = TrainingJob(path)
            job.start()
        except InputError:
            if created:
                path.unlink(missing_ok=True)
                if not os.listdir(folder):
                    os.rmdir(folder)
            raise
        return job

    def startTraining(self, p):
        """Write the spec into a new job folder (datasetFolder/jobs/METHOD-TIME) and start its worker process;
        InputError (naming the field, or what the dataset lacks for this method) when it cannot start."""
        import os
        import time

        dataset = self._checkedDataset(p.datasetFolder)
        spec = self.jobSpec(p)
        folder = base = os.path.join(dataset, "jobs", f"{spec['method']}-{time.strftime('%Y%m%d-%H%M%S')}")
        n = 1
        while os.path.exists(folder):  # two starts within a second: never write into another job's folder
            n += 1
            folder = f"{base}-{n}"
        return self._startJob(spec, os.path.join(folder, "job.json"))

    @staticmethod
    def canResume(job) -> bool:
        return (job.output / "checkpoints" / "last.pt").is_file()

    # --- pseudo-labelling a dataset (a job, like training) ------------------------------------------------

    @staticmethod
    def pseudoLabelMethod(trainingMethod: str) -> str:
        """The annotation method whose pseudo-labels a training method's cases get ("" when its annotation makes
        none), from the method registry."""
        from WeakAnnotateLib.core.errors import InputError
        from WeakAnnotateLib.methods import registry

        try:
            method = registry.method_of_training(trainingMethod)
        except InputError:
            return ""
        return method.name if method.label_case else ""

    def startPseudoLabelling(self, folder: str, method: str = "extreme_points"):
        """Start the pseudo-labels job of a dataset (``FOLDER/pseudo_labels/``): one progress row per case."""
        import os

        from WeakAnnotateLib.core.errors import InputError

        if self.pseudoLabelling:
            raise InputError(_("Pseudo-labelling is already running."))
        dataset = self._checkedDataset(folder)
        spec = {"job": "pseudo_labels", "dataset": dataset, "method": method, "overwrite": False}
        self.pseudoJob = self._startJob(spec, os.path.join(dataset, "pseudo_labels", "job.json"))
        return self.pseudoJob

    @property
    def pseudoLabelling(self) -> bool:
        job = self.pseudoJob
        return job is not None and (job.running or job.state == "running")

    @staticmethod
    def pseudoLabelText(event: dict) -> str:
        """A pseudo-labels job's progress event as the panel's status line."""
        kind = event.get("event")
        if kind == "pseudo_label":
            text = _("Pseudo-label {index}/{total}: {case} {status}").format(
                index=event.get("index"), total=event.get("total"), case=event.get("case"), status=event.get("status")
            )
            if event.get("error"):
                text += f" ({event['error']})"
            elif event.get("dice_vs_reference") is not None:
                text += " " + _("(Dice {dice:.3f} against the reference)").format(dice=event["dice_vs_reference"])
            return text
        if kind == "done":
            failed = event.get("failed") or []
            if failed:
                return _("Pseudo-labelled {count} case(s); failed: {failed}.").format(
                    count=event.get("cases", 0), failed=", ".join(failed)
                )
            return _("Pseudo-labelled {count} case(s).").format(count=event.get("cases", 0))
        if kind == "cancelled":
            return _("Pseudo-labelling cancelled after {count} case(s).").format(count=event.get("labelled", 0))
        if kind == "failed":
            return _("Pseudo-labelling failed: {error}").format(error=event.get("error", ""))
        return ""

    # --- prediction (arrays in a thread, the scene on the main thread) -----------------------------------

    # --- annotation loop (WeakAnnotateLib.jobs.annotation_loop; the same as 'weakannotate loop') ------------

    @staticmethod
    def _loop(folder: str, finetuneEvery: int = 0, start: str = ""):
        from WeakAnnotateLib.jobs.annotation_loop import AnnotationLoop

        loop = AnnotationLoop(WeakAnnotateLogic._checkedDataset(folder))
        if finetuneEvery and int(loop.state["finetune_every"]) != int(finetuneEvery):
            loop.configure(finetune_every=int(finetuneEvery))  # the panel's setting is the dataset's too
        if start and loop.state["start"] != start:
            loop.configure(start=start)
        return loop

    def loopRanking(self, folder: str, strategy: str, tta: bool = False) -> list:
        return self._loop(folder).ranking(strategy, tta=bool(tta))

    def startLoopNext(
        self, folder: str, strategy: str, tta: bool = False, finetuneEvery: int = 0, start: str = ""
    ) -> None:
        """The next case and its starting segment (as ``start`` says: auto, model or marks) in a thread;
        finishLoopNext shows it."""
        import threading

        from WeakAnnotateLib.core.errors import InputError

        if self.loopPending:
            raise InputError(_("The next case is already being opened."))
        loop = self._loop(folder, finetuneEvery, start)
        result = {"loop": loop}

        def work():
            from WeakAnnotateLib.files.image_io import read_image, read_mask

            try:
                start = loop.next_case(strategy, tta=bool(tta))
                result["start"] = start
                result["image"] = read_image(start.image)
                result["mask"] = read_mask(start.start, grid=result["image"].geometry)
            except Exception as error:  # reported on the main thread
                result["error"] = str(error)

        thread = threading.Thread(target=work, daemon=True)
        self._loopNext = (thread, result)
        thread.start()

    @property
    def loopPending(self) -> bool:
        return self._loopNext is not None

    def finishLoopNext(self):
        """On the main thread once the thread is done: the case's volume and its starting segment in the scene."""
        import time

        from WeakAnnotateLib.scene.mrml_adapter import add_segmentation_node, add_volume_node, set_segment_mask
        from WeakAnnotateLib.scene.slicer_runtime import get_runtime

        if self._loopNext is None or self._loopNext[0].is_alive():
            return None
        _thread, result = self._loopNext
        self._loopNext = None
        if "error" in result:
            return _("Next case: {error}").format(error=result["error"])
        rt = get_runtime()
        start, image = result["start"], result["image"]
        volume = add_volume_node(rt, image, start.case)
        segmentation = add_segmentation_node(rt, f"{start.case} loop", volume)
        segment = set_segment_mask(rt, segmentation, result["mask"], image.geometry, f"loop {start.case}",
                                   (0.95, 0.75, 0.2))  # fmt: skip
        self.loopCase = {"folder": str(result["loop"].root), "case": start.case, "volume": volume,
                         "segmentation": segmentation, "segment": segment, "opened": time.monotonic(),
                         "effort": start.effort}  # fmt: skip
        text = _("{case}: {voxels} voxels from {source}. Correct the segment, then Accept.").format(
            case=start.case, voxels=start.voxels, source=start.source
        )
        return " ".join([text, *start.warnings])

    def _loopEffort(self) -> dict:
        """Corrective clicks stored on the segment (ExtremePointSeg's corrections) and the seconds since opened."""
        import time

        from WeakAnnotateLib.methods.extreme_points.corrective import stored_clicks

        case = self.loopCase
        before = case["effort"].get("corrective", {})
        clicks = len(stored_clicks(case["segmentation"], case["segment"]))
        seconds = float(before.get("seconds", 0.0)) + time.monotonic() - case["opened"]
        return {"corrective": {"clicks": int(before.get("clicks", 0)) + clicks, "seconds": round(seconds, 1)}}

    def _loopMask(self):
        from WeakAnnotateLib.core.errors import InputError
        from WeakAnnotateLib.scene.mrml_adapter import image_of_node, segment_mask

        case = self.loopCase
        if slicer.mrmlScene.GetNodeByID(case["segmentation"].GetID()) is None:
            raise InputError(_("The loop's segmentation was removed from the scene; press Next case to reload it."))
        return segment_mask(case["segmentation"], case["segment"], image_of_node(case["volume"]).geometry)

    def loopSaveDraft(self) -> None:
        """The open case's segment as it is now, so that "Next case" after a restart continues from it."""
        if self.loopCase is None:
            return
        self._loop(self.loopCase["folder"]).save_draft(self.loopCase["case"], self._loopMask(), self._loopEffort())

    def loopAccept(self, finetuneEvery: int = 0) -> str:
        """Accept the open case: its segment and effort into the dataset; a fine-tune starts every N cases."""
        from WeakAnnotateLib.core.errors import InputError

        if self.loopCase is None:
            raise InputError(_("No case of the annotation loop is open; press Next case."))
        loop = self._loop(self.loopCase["folder"], finetuneEvery)
        result = loop.accept(self.loopCase["case"], self._loopMask(), self._loopEffort())
        effort = result["accepted"]["effort"]
        text = _("Accepted {case}: {clicks} clicks, {seconds} s; {left} cases left.").format(
            case=self.loopCase["case"], clicks=effort["clicks"], seconds=round(effort["seconds"]),
            left=result["remaining"],
        )  # fmt: skip
        if result.get("job"):
            text += " " + _("Fine-tuning started: {job}.").format(job=result["job"]["output"])
        elif result.get("job_error"):
            text += " " + _("No fine-tuning: {error}").format(error=result["job_error"])
        self.loopFolder = self.loopCase["folder"]
        self.loopCase = None
        return text

    def loopJobText(self) -> tuple:
        """(text, still running) of the loop's fine-tuning job."""
        folder = getattr(self, "loopFolder", "") or (self.loopCase or {}).get("folder", "")
        job = self._loop(folder).poll_job() if folder else None
        if not job:
            return "", False
        return _("Fine-tuning {job}: {state}.").format(job=job["output"], state=job["state"]), job["state"] == "running"

    def loopJobRunning(self) -> bool:
        return self.loopJobText()[1]

    def startPrediction(self, volumeNode, modelPath, pointsNode=None) -> None:
        import threading

        from WeakAnnotateLib.core.errors import InputError
        from WeakAnnotateLib.networks.prediction import load_model, predict_image
        from WeakAnnotateLib.scene import mrml_adapter

        if self.predicting:
            raise InputError(_("A prediction is already running."))
        if not modelPath:
            raise InputError(_("Select a trained model in the list."))
        image = mrml_adapter.image_of_node(volumeNode)
        points = None
        if pointsNode is not None:
            points, _labels = mrml_adapter.points_of_node(pointsNode)
            points = points if len(points) else None
        model = load_model(modelPath)  # fails here (clear message) rather than in the thread
        if model.needs_points and points is None:
            raise InputError(
                _("Model {model} needs the six extreme points: select a point list.").format(model=repr(model.name))
            )
        result = {"volume": volumeNode, "geometry": image.geometry, "model": model}

        def work():
            try:
                result["mask"], _probability = predict_image(model, image, points)
            except Exception as error:  # reported on the main thread
                result["error"] = str(error)

        thread = threading.Thread(target=work, daemon=True)
        self._prediction = (thread, result)
        thread.start()

    @property
    def predicting(self) -> bool:
        return self._prediction is not None and self._prediction[0].is_alive()

    @property
    def predictionPending(self) -> bool:
        """A prediction was started and not yet finished by :meth:`finishPrediction` (its thread may be done)."""
        return self._prediction is not None

    def finishPrediction(self):
        """On the main thread once the thread is done: the mask becomes a segment named after the model."""
        from WeakAnnotateLib.core.colors import segment_color
        from WeakAnnotateLib.methods.pet_boxes import lesions as pet_lesions
        from WeakAnnotateLib.scene.mrml_adapter import add_segmentation_node, set_segment_mask
        from WeakAnnotateLib.scene.slicer_runtime import get_runtime

        if self._prediction is None or self._prediction[0].is_alive():
            return None
        _thread, result = self._prediction
        self._prediction = None
        if "error" in result:
            return _("Prediction failed: {error}").format(error=result["error"])
        rt = get_runtime()
        volume = result["volume"]
        name = f"{volume.GetName()} predictions"
        node = slicer.mrmlScene.GetFirstNodeByName(name)
        if node is None or not node.IsA("vtkMRMLSegmentationNode"):
            node = add_segmentation_node(rt, name, volume)
        model = result["model"]
        set_segment_mask(rt, node, result["mask"], result["geometry"], model.name, segment_color(model.name))
        text = _("Added segment {segment} ({voxels} voxels) to {node}.").format(
            segment=repr(model.name), voxels=int(result["mask"].sum()), node=repr(name)
        )
        self.lastLesions, self.lastWarnings = [], []
        if pet_lesions.is_pet_model(model.info):  # PET: one segment per lesion, with volume and SUV
            lesionNode, self.lastLesions, self.lastWarnings = pet_lesions.lesions_of_nodes(
                rt, volume, result["mask"], result["geometry"], model_info=model.info
            )
            text += " " + _("{count} lesion(s) in {node}.").format(
                count=len(self.lastLesions), node=repr(lesionNode.GetName())
            )
        return " ".join([text, *self.lastWarnings])

    # --- live plot -------------------------------------------------------------------------------------

    def resetPlot(self) -> None:
        """A chart with the training loss per step and the validation Dice per epoch (x = step)."""
        scene = slicer.mrmlScene
        chart = scene.GetFirstNodeByName("WeakAnnotate training")
        if chart is None:
            chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", "WeakAnnotate training")
            chart.SetXAxisTitle("step")
            chart.SetYAxisTitle("loss / Dice")
        for key, title in (("loss", "loss"), ("dice", "validation Dice")):
            table = self._plotTables.get(key)
            if table is None or scene.GetNodeByID(table.GetID()) is None:
                table = scene.AddNewNodeByClass("vtkMRMLTableNode", f"WeakAnnotate {title}")
                for column in ("step", key):
                    array = vtk.vtkFloatArray()
                    array.SetName(column)
                    table.AddColumn(array)
                series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"WeakAnnotate {title}")
                series.SetAndObserveTableNodeID(table.GetID())
                series.SetXColumnName("step")
                series.SetYColumnName(key)
                series.SetPlotType(series.PlotTypeScatter)
                series.SetMarkerStyle(series.MarkerStyleNone if key == "loss" else series.MarkerStyleCircle)
                series.SetColor(*((0.2, 0.4, 0.8) if key == "loss" else (0.9, 0.5, 0.0)))
                chart.AddAndObservePlotSeriesNodeID(series.GetID())
                self._plotTables[key] = table
            table.GetTable().SetNumberOfRows(0)
            table.GetTable().Modified()
        if self.plotViewNode is None or scene.GetNodeByID(self.plotViewNode.GetID()) is None:
            self.plotViewNode = scene.AddNewNodeByClass("vtkMRMLPlotViewNode", "WeakAnnotate training view")
        self.plotViewNode.SetPlotChartNodeID(chart.GetID())

    def addPlotPoint(self, key: str, x: float, y: float) -> None:
        table = self._plotTables.get(key)
        if table is None or y is None:
            return
        t = table.GetTable()
        row = t.GetNumberOfRows()
        t.SetNumberOfRows(row + 1)
        t.SetValue(row, 0, float(x))
        t.SetValue(row, 1, float(y))
        t.Modified()

    @staticmethod
    def epochText(e: dict) -> str:
        dice = e.get("val_dice")
        return _(
            "Epoch {epoch}/{epochs} (round {round_number}): loss {loss:.3f}, validation Dice {dice}, "
            "{seconds:.1f} s/epoch, ETA {minutes:.1f} min"
        ).format(
            epoch=e["epoch"],
            epochs=e["epochs"],
            round_number=e.get("round", 1),
            loss=e["loss"],
            dice=_("n/a") if dice is None else f"{dice:.3f}",
            seconds=e["seconds_per_epoch"],
            minutes=e["eta_s"] / 60,
        )

    @staticmethod
    def resultsTable(results: dict) -> str:
        """The metrics as a small HTML table for a QLabel; a distance is "n/a" when the prediction is empty."""
        rows = [("Dice", "dice", ""), ("IoU", "iou", ""), ("HD95", "hd95_mm", " mm"), ("ASD", "asd_mm", " mm")]
        cells = ""
        for name, key, unit in rows:
            value = results.get(key)
            text = _("n/a (empty prediction)") if value is None else f"{value:.3f}{unit}"
            cells += f"<tr><td>{name}</td><td align='right'>{text}</td></tr>"
        return f"<table cellspacing='4'>{cells}</table>"


#
# WeakAnnotateTest
#


class WeakAnnotateTest(ScriptedLoadableModuleTest):
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
        self.test_WeakAnnotate_sampleData()
        self.setUp()
        self.test_WeakAnnotate_selftests()

    def test_WeakAnnotate_sampleData(self):
        """The phantom the extension ships loads through the Sample Data module (no download), and its reference
        segment evaluated against itself by the hub's logic scores Dice 1."""
        from WeakAnnotateDesktop.first_run import require_dependencies
        from WeakAnnotateDesktop.sample_data import load_sample

        require_dependencies("WeakAnnotate")
        volume, segmentation = load_sample()
        self.assertEqual(volume.GetImageData().GetDimensions(), (56, 48, 40))
        self.assertEqual(segmentation.GetSegmentation().GetNumberOfSegments(), 1)
        results = WeakAnnotateLogic().evaluate(volume, segmentation, segmentation)
        self.assertEqual(results["dice"], 1.0)

    def test_WeakAnnotate_selftests(self):
        from WeakAnnotateDesktop.first_run import require_dependencies

        require_dependencies("WeakAnnotate")  # missing packages: a message saying so, not an ImportError
        from WeakAnnotateLib.apps.selftests import run_module_selftests
        from WeakAnnotateLib.scene.slicer_runtime import get_runtime

        run_module_selftests("WeakAnnotate", get_runtime())
