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
reference (Dice, IoU, 95th-percentile Hausdorff distance and average surface distance, in mm), and trains networks
from a dataset folder in a background process (start, watch loss and validation Dice, cancel, resume), lists the
trained models with their metrics and applies one to the current volume as a segment.
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
    datasetFolder - The dataset folder (dataset.json) that training uses; jobs go to its jobs/ subfolder.
    trainingMethod, epochs, learningRate, patchSize, batchSize, rounds, randomWalkerRounds, device - The job's
        hyper-parameters: kept in the scene so that they are visible and persist (written into every job spec).
    applyPoints - Six clicks that give the crop (and the points channel) when a model is applied.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    referenceSegmentation: vtkMRMLSegmentationNode
    predictionSegmentation: vtkMRMLSegmentationNode
    datasetFolder: str = ""
    trainingMethod: str = "extreme_point_network"
    epochs: int = 10
    learningRate: float = 0.001
    patchSize: int = 32
    batchSize: int = 2
    rounds: int = 3
    randomWalkerRounds: bool = True
    device: str = "auto"
    applyPoints: vtkMRMLMarkupsFiducialNode


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
        self._job = None  # TrainingJob of the last started job
        self._jobEpochs = 1
        self._shownDataset = None
        self._timer = None

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
        self.ui.browseDatasetButton.connect("clicked(bool)", self.onBrowseDataset)
        self.ui.pseudoLabelButton.connect("clicked(bool)", self.onPseudoLabel)
        self.ui.startTrainingButton.connect("clicked(bool)", self.onStartTraining)
        self.ui.cancelTrainingButton.connect("clicked(bool)", self.onCancelTraining)
        self.ui.resumeTrainingButton.connect("clicked(bool)", self.onResumeTraining)
        self.ui.applyModelButton.connect("clicked(bool)", self.onApplyModel)
        self.ui.modelsTable.connect("itemSelectionChanged()", self._checkCanApply)
        self.ui.trainingLogText.setVisible(False)
        self.ui.lesionsTable.setVisible(False)  # shown after a PET model is applied

        # Everything slow runs elsewhere (worker process, pseudo-label process, prediction thread); this timer
        # only reads what they reported, so the GUI never waits for them.
        self._timer = qt.QTimer()
        self._timer.setInterval(500)
        self._timer.connect("timeout()", self.onPoll)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        if self._timer:
            self._timer.stop()
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
        if p and p.datasetFolder != self._shownDataset:
            self._shownDataset = p.datasetFolder
            self.refreshDataset()
        running = bool(self._job and self._job.running)
        self.ui.startTrainingButton.enabled = bool(p and p.datasetFolder) and not running
        self.ui.cancelTrainingButton.enabled = running
        self.ui.resumeTrainingButton.enabled = bool(
            self._job and not running and self._job.state in ("cancelled", "failed") and self.logic.canResume(self._job)
        )
        self.ui.randomWalkerCheckBox.enabled = self.ui.roundsSpinBox.enabled = bool(
            p and p.trainingMethod == "extreme_point_network"
        )
        self.ui.applyModelButton.enabled = bool(p and p.inputVolume and self._selectedModel())
        if p and p.inputVolume and p.referenceSegmentation and p.predictionSegmentation:
            self.ui.evaluateButton.toolTip = "Compare the prediction's first segment with the reference's."
            self.ui.evaluateButton.enabled = True
        else:
            self.ui.evaluateButton.toolTip = "Select a volume, a reference and a prediction segmentation."
            self.ui.evaluateButton.enabled = False

    def onEvaluateButton(self) -> None:
        """Compare the prediction with the reference when the user clicks "Evaluate"."""
        from WeakAnnotateLib.core.errors import InputError

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

    # --- dataset ---------------------------------------------------------------------------------------

    def onBrowseDataset(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(
            slicer.util.mainWindow(), "Dataset folder", self._parameterNode.datasetFolder or ""
        )
        if folder:
            self._parameterNode.datasetFolder = folder

    def refreshDataset(self) -> None:
        """Fill the cases and models tables from the dataset folder (cheap: reads dataset.json and model.json)."""
        from WeakAnnotateLib.core.errors import InputError

        folder = self._parameterNode.datasetFolder if self._parameterNode else ""
        cases, models = [], []
        if folder:
            try:
                cases = self.logic.caseRows(folder)
                models = self.logic.modelRows(folder)
            except InputError as error:
                self.ui.trainingStatusLabel.text = str(error)
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
            for c, text in enumerate(row):
                table.setItem(r, c, qt.QTableWidgetItem(text))
        table.resizeColumnsToContents()

    def _selectedModel(self):
        rows = {index.row() for index in self.ui.modelsTable.selectedIndexes()}
        models = getattr(self, "_models", [])
        if len(rows) == 1 and min(rows) < len(models):
            return models[min(rows)]["path"]
        return None

    def onPseudoLabel(self) -> None:
        from WeakAnnotateLib.core.errors import InputError

        try:
            self.logic.startPseudoLabelling(self._parameterNode.datasetFolder)
        except InputError as error:
            self.ui.trainingStatusLabel.text = str(error)
            return
        self.ui.pseudoLabelButton.enabled = False
        self.ui.trainingStatusLabel.text = "Pseudo-labelling the dataset in the background…"
        self._timer.start()

    # --- training --------------------------------------------------------------------------------------

    def onStartTraining(self) -> None:
        from WeakAnnotateLib.core.errors import InputError

        self.ui.trainingLogText.setVisible(False)
        try:
            self._job = self.logic.startTraining(self._parameterNode)
        except InputError as error:
            # Rejected before anything started; the message names the field.
            self.ui.trainingStatusLabel.text = str(error)
            return
        self._jobEpochs = 1
        self.logic.resetPlot()
        self.ui.trainingPlotWidget.setMRMLPlotViewNode(self.logic.plotViewNode)
        self.ui.trainingProgressBar.value = 0
        self.ui.trainingStatusLabel.text = f"Started {self._job.output.name}."
        self._timer.start()
        self._checkCanApply()

    def onCancelTraining(self) -> None:
        if self._job:
            self._job.cancel()
            self.ui.trainingStatusLabel.text = "Cancelling after the current step…"

    def onResumeTraining(self) -> None:
        from WeakAnnotateLib.core.errors import InputError

        try:
            self._job.resume()
        except InputError as error:
            self.ui.trainingStatusLabel.text = str(error)
            return
        self.ui.trainingLogText.setVisible(False)
        self.ui.trainingStatusLabel.text = f"Resumed {self._job.output.name}."
        self._timer.start()
        self._checkCanApply()

    def onPoll(self) -> None:
        """Timer tick: read what the background work reported; never waits for it."""
        busy = False
        if self._job is not None and (self._job.running or self._job.state == "running"):
            busy = True
            for event in self._job.poll():
                self._showEvent(event)
            if self._job.state != "running":
                self.refreshDataset()
                self._checkCanApply()
        for row in self.logic.pollPseudoLabelling():
            status = row.get("status", "")
            self.ui.trainingStatusLabel.text = (
                f"Pseudo-label {row.get('index')}/{row.get('total')}: {row.get('case')} {status}"
                + (f" ({row['error']})" if row.get("error") else "")
            )
        if self.logic.pseudoLabelling:
            busy = True
        elif not self.ui.pseudoLabelButton.enabled:
            self.ui.pseudoLabelButton.enabled = True
            self.refreshDataset()
        done = self.logic.finishPrediction()
        if done is not None:
            self.ui.applyModelButton.enabled = True
            self.ui.statusLabel.text = done
            self._showLesions(self.logic.lastLesions)
        if self.logic.predicting:
            busy = True
        if not busy:
            self._timer.stop()

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
            self.ui.trainingStatusLabel.text += f" — round {event['round']} done (change {event['change']:.3f})"
        elif kind == "done":
            self.ui.trainingProgressBar.value = self.ui.trainingProgressBar.maximum
            dice = event.get("val_dice_native")
            self.ui.trainingStatusLabel.text = "Finished" + (f": validation Dice {dice:.3f}." if dice else ".")
        elif kind == "cancelled":
            self.ui.trainingStatusLabel.text = (
                f"Cancelled at epoch {event.get('epoch')}; Resume continues after epoch "
                f"{event.get('last_checkpoint_epoch') or 0}."
            )
        elif kind == "failed":
            self.ui.trainingStatusLabel.text = f"Training failed: {event.get('error', '')}"
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
        from WeakAnnotateLib.core.errors import InputError

        model = self._selectedModel()
        try:
            self.logic.startPrediction(self._parameterNode.inputVolume, model, self._parameterNode.applyPoints)
        except InputError as error:
            self.ui.statusLabel.text = str(error)
            return
        self.ui.applyModelButton.enabled = False
        self.ui.statusLabel.text = "Predicting in the background…"
        self._showLesions([])
        self._timer.start()


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
        self._pseudoProcess = None
        self._pseudoOffset = 0
        self._pseudoLog = None
        self._prediction = None  # (thread, result dict)
        self.lastLesions = []  # PET models: pet_lesions.Lesion records of the last prediction, largest first
        self.lastWarnings = []  # PET models: SUV / modality warnings of the last prediction

    def getParameterNode(self):
        return WeakAnnotateParameterNode(super().getParameterNode())

    def evaluate(self, volumeNode, referenceSegmentation, predictionSegmentation) -> dict:
        """Dice, IoU, HD95 (mm) and ASD (mm) of the prediction's first segment against the reference's,
        both resampled onto the volume's grid."""
        from WeakAnnotateLib.core.errors import InputError
        from WeakAnnotateLib.evaluation import metrics
        from WeakAnnotateLib.scene import mrml_adapter

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
        """The job spec a panel's parameters describe (every hyper-parameter explicit, so it is recorded)."""
        import os

        size = int(p.patchSize)
        return {
            "dataset": os.path.abspath(p.datasetFolder),
            "output": ".",
            "method": p.trainingMethod,
            "epochs": int(p.epochs),
            "learning_rate": float(p.learningRate),
            "patch_size": [size, size, size],
            "batch_size": int(p.batchSize),
            "rounds": int(p.rounds),
            "random_walker": bool(p.randomWalkerRounds),
            "device": p.device,
        }

    def startTraining(self, p):
        """Write the spec into a new job folder (datasetFolder/jobs/METHOD-TIME) and start the worker process."""
        import os
        import time

        from WeakAnnotateLib.core.errors import InputError
        from WeakAnnotateLib.jobs.runner import TrainingJob

        if not p.datasetFolder:
            raise InputError("dataset: choose a dataset folder first.")
        spec = self.jobSpec(p)
        folder = os.path.join(spec["dataset"], "jobs", f"{p.trainingMethod}-{time.strftime('%Y%m%d-%H%M%S')}")
        path = TrainingJob.write_spec(spec, os.path.join(folder, "job.json"))
        job = TrainingJob(path)
        job.start()
        return job

    @staticmethod
    def canResume(job) -> bool:
        return (job.output / "checkpoints" / "last.pt").is_file()

    # --- batch pseudo-labelling (a background process, polled) --------------------------------------------

    def startPseudoLabelling(self, folder: str) -> None:
        import os
        import subprocess
        import sys

        from WeakAnnotateLib.core.errors import InputError
        from WeakAnnotateLib.data.dataset import DatasetFolder

        if self.pseudoLabelling:
            raise InputError("Pseudo-labelling is already running.")
        DatasetFolder.load(folder)  # a clear message now rather than in the log
        log = os.path.join(folder, "pseudo_label.log")
        self._pseudoLog = open(log, "wb")  # noqa: SIM115 - kept open for the child's lifetime
        self._pseudoOffset = 0
        self._pseudoProcess = subprocess.Popen(
            [sys.executable, "-m", "WeakAnnotateLib.cli.main", "dataset", "pseudo-label", folder],
            stdout=self._pseudoLog,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self._pseudoLogPath = log

    @property
    def pseudoLabelling(self) -> bool:
        return self._pseudoProcess is not None and self._pseudoProcess.poll() is None

    def pollPseudoLabelling(self) -> list:
        """New progress rows of the pseudo-labelling process (one JSON line per case)."""
        import json

        if self._pseudoProcess is None:
            return []
        with open(self._pseudoLogPath, "rb") as f:
            f.seek(self._pseudoOffset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        self._pseudoOffset += end
        rows = []
        for line in chunk[:end].decode("utf-8", "replace").splitlines():
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
        if self._pseudoProcess.poll() is not None and end == len(chunk):
            self._pseudoLog.close()
            self._pseudoProcess = None
        return rows

    # --- prediction (arrays in a thread, the scene on the main thread) -----------------------------------

    def startPrediction(self, volumeNode, modelPath, pointsNode=None) -> None:
        import threading

        from WeakAnnotateLib.core.errors import InputError
        from WeakAnnotateLib.networks.prediction import load_model, predict_image
        from WeakAnnotateLib.scene import mrml_adapter

        if self.predicting:
            raise InputError("A prediction is already running.")
        if not modelPath:
            raise InputError("Select a trained model in the list.")
        image = mrml_adapter.image_of_node(volumeNode)
        points = None
        if pointsNode is not None:
            points, _ = mrml_adapter.points_of_node(pointsNode)
            points = points if len(points) else None
        model = load_model(modelPath)  # fails here (clear message) rather than in the thread
        if model.needs_points and points is None:
            raise InputError(f"Model {model.name!r} needs the six extreme points: select a point list.")
        result = {"volume": volumeNode, "geometry": image.geometry, "model": model}

        def work():
            try:
                result["mask"], _ = predict_image(model, image, points)
            except Exception as error:  # reported on the main thread
                result["error"] = str(error)

        thread = threading.Thread(target=work, daemon=True)
        self._prediction = (thread, result)
        thread.start()

    @property
    def predicting(self) -> bool:
        return self._prediction is not None and self._prediction[0].is_alive()

    def finishPrediction(self):
        """On the main thread once the thread is done: the mask becomes a segment named after the model."""
        from WeakAnnotateLib.core.colors import segment_color
        from WeakAnnotateLib.methods.pet_boxes import lesions as pet_lesions
        from WeakAnnotateLib.scene.mrml_adapter import add_segmentation_node, set_segment_mask
        from WeakAnnotateLib.scene.slicer_runtime import get_runtime

        if self._prediction is None or self._prediction[0].is_alive():
            return None
        _, result = self._prediction
        self._prediction = None
        if "error" in result:
            return f"Prediction failed: {result['error']}"
        rt = get_runtime()
        volume = result["volume"]
        name = f"{volume.GetName()} predictions"
        node = slicer.mrmlScene.GetFirstNodeByName(name)
        if node is None or not node.IsA("vtkMRMLSegmentationNode"):
            node = add_segmentation_node(rt, name, volume)
        model = result["model"]
        set_segment_mask(rt, node, result["mask"], result["geometry"], model.name, segment_color(model.name))
        text = f"Added segment {model.name!r} ({int(result['mask'].sum())} voxels) to {name!r}."
        self.lastLesions, self.lastWarnings = [], []
        if pet_lesions.is_pet_model(model.info):  # PET: one segment per lesion, with volume and SUV
            lesionNode, self.lastLesions, self.lastWarnings = pet_lesions.lesions_of_nodes(
                rt, volume, result["mask"], result["geometry"], model_info=model.info
            )
            text += f" {len(self.lastLesions)} lesion(s) in {lesionNode.GetName()!r}."
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
        return (
            f"Epoch {e['epoch']}/{e['epochs']} (round {e.get('round', 1)}): loss {e['loss']:.3f}, "
            f"validation Dice {'n/a' if dice is None else f'{dice:.3f}'}, {e['seconds_per_epoch']:.1f} s/epoch, "
            f"ETA {e['eta_s'] / 60:.1f} min"
        )

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
        self.test_WeakAnnotate_selftests()

    def test_WeakAnnotate_selftests(self):
        from WeakAnnotateLib.apps.selftests import run_module_selftests
        from WeakAnnotateLib.scene.slicer_runtime import get_runtime

        run_module_selftests("WeakAnnotate", get_runtime())
