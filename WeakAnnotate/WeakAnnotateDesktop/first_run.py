"""A module's first use in desktop Slicer: the Python packages it needs, asked for once and installed with
progress in its panel (desktop Slicer only: Qt).

Every module's widget calls :func:`dependencies_ready` at the top of ``setup()``, before it imports anything of
the extension's logic. When something is missing the module's panel shows what, and why, instead of its widgets
(and instead of an ImportError's traceback); the user is asked once (one dialog for the whole plan: the PyTorch
extension's own confirmation is not shown again); the packages are installed one by one with a progress bar
and pip's output in the panel; then the module reloads itself with its real panel. What is missing, the order,
the torch route (the PyTorch extension, or the CPU build, said so), and every text come from
:mod:`.dependencies`, which is pure and tested; this file only shows and runs them.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import shutil
import sys
import tempfile

import ctk
import qt
import slicer

from .dependencies import (
    TORCH_NOT_NEEDED,
    TORCH_PYTORCH_EXTENSION,
    DependencyFileError,
    InstallPlan,
    Step,
    constraints,
    device_message,
    load,
    plan_install,
    probe,
    replaced_while_loaded,
)
from .i18n import _

# Plans the user has already confirmed or declined in this session (by their requirements): asked once.
_answered: set[tuple[str, ...]] = set()


def _title(module: str) -> str:
    try:
        return slicer.util.getModule(module).title
    except Exception:  # noqa: BLE001 - the name will do
        return module


def current_plan(module: str) -> InstallPlan:
    """The install plan of ``module`` for this Slicer, as it is now."""
    deps = load()
    return dataclasses.replace(plan_install(deps, module, probe(deps)), title=_title(module))


def dependencies_ready(widget, module: str) -> bool:
    """At the top of a module widget's ``setup()``: True when everything ``module`` needs is installed (setup
    goes on). Otherwise the panel shows what is missing and how to get it, asks once to install it (not in
    testing mode), and this returns False: setup must stop there (the module reloads itself once installed)."""
    try:
        plan = current_plan(module)
    except DependencyFileError as error:
        _addMessage(widget.layout, str(error))
        return False
    if plan.ready:
        return True
    panel = InstallPanel(widget.layout, plan)
    widget._weakAnnotateInstallPanel = panel  # kept alive with the widget
    if plan.installable and plan.key not in _answered and not slicer.app.testingEnabled():
        qt.QTimer.singleShot(0, panel.confirmAndInstall)  # once the panel is on screen
    return False


def require_dependencies(module: str) -> None:
    """For the self-tests: a clear error naming what is missing instead of an ImportError deep in a test."""
    plan = current_plan(module)
    if not plan.ready:
        raise RuntimeError(plan.message() + "\n" + _("Open the module once to install them, then run the test again."))


def _addMessage(layout, text: str):
    label = qt.QLabel(text)
    label.wordWrap = True
    label.textInteractionFlags = qt.Qt.TextSelectableByMouse
    layout.addWidget(label)
    layout.addStretch(1)
    return label


class InstallPanel:
    """What is missing, the Install / Retry button, the progress bar and pip's output, in a module's panel."""

    def __init__(self, layout, plan: InstallPlan) -> None:
        self.plan = plan
        box = ctk.ctkCollapsibleButton()
        box.text = _("Python packages")
        layout.addWidget(box)
        form = qt.QVBoxLayout(box)
        self.messageLabel = qt.QLabel(plan.message())
        self.messageLabel.wordWrap = True
        self.messageLabel.textInteractionFlags = qt.Qt.TextSelectableByMouse
        form.addWidget(self.messageLabel)
        self.installButton = qt.QPushButton(_("Install"))
        self.installButton.toolTip = _("Install the packages listed above into Slicer's Python.")
        self.installButton.visible = plan.installable
        self.installButton.connect("clicked(bool)", lambda _checked=False: self.install())
        form.addWidget(self.installButton)
        self.progressBar = qt.QProgressBar()
        self.progressBar.visible = False
        form.addWidget(self.progressBar)
        self.statusLabel = qt.QLabel()
        self.statusLabel.wordWrap = True
        self.statusLabel.textInteractionFlags = qt.Qt.TextSelectableByMouse
        form.addWidget(self.statusLabel)
        self.log = qt.QPlainTextEdit()
        self.log.readOnly = True
        self.log.maximumBlockCount = 2000
        self.log.visible = False
        form.addWidget(self.log)
        layout.addStretch(1)

    # --- asking -------------------------------------------------------------------------------------------

    def confirmAndInstall(self) -> None:
        """The one question: install the plan's packages now?"""
        _answered.add(self.plan.key)
        question = self.plan.message() + "\n\n" + _("Install them now?")
        if slicer.util.confirmOkCancelDisplay(question, windowTitle=_("WeakAnnotate: Python packages")):
            self.install()
        else:
            self.showManualCommands(
                _("Nothing was installed. Click Install when you are ready, or type this into Slicer's Python console:")
            )

    def showManualCommands(self, intro: str) -> None:
        self.statusLabel.text = "\n".join([intro, *self.plan.console_commands()])

    # --- installing ---------------------------------------------------------------------------------------

    def install(self) -> None:
        """Run the plan's steps (planned again now: another module may have installed some meanwhile)."""
        _answered.add(self.plan.key)
        try:
            deps = load()
            self.plan = dataclasses.replace(plan_install(deps, self.plan.module, probe(deps)), title=self.plan.title)
        except DependencyFileError as error:
            self.statusLabel.text = str(error)
            return
        if not self.plan.installable:
            self._finish()
            return
        steps = self.plan.steps
        self.installButton.enabled = False
        self.progressBar.setRange(0, len(steps))
        self.progressBar.value = 0
        self.progressBar.visible = True
        self.log.visible = True
        for index, step in enumerate(steps):
            self.statusLabel.text = _("Installing {what} ({index} of {count})…").format(
                what=step.title(), index=index + 1, count=len(steps)
            )
            slicer.app.processEvents()
            try:
                with slicer.util.WaitCursor():
                    self._run(step, deps)
            except Exception as error:  # noqa: BLE001 - shown in the panel, with pip's output above it
                logging.exception("WeakAnnotate: installing %s failed", step.requirement)
                self.progressBar.visible = False
                self.installButton.text = _("Retry")
                self.installButton.enabled = True
                self.statusLabel.text = _(
                    "Installing {what} failed: {error}\nThe output is above (and in the Python console). Check the "
                    "internet connection, or install from a folder of wheels (see the WeakAnnotate documentation: "
                    "first run in desktop Slicer), then click Retry."
                ).format(what=step.requirement, error=error)
                return
            importlib.invalidate_caches()  # the new packages must be found by the next import
            self.progressBar.value = index + 1
        self._finish()

    def _run(self, step: Step, deps) -> None:
        if step.kind == TORCH_PYTORCH_EXTENSION:
            self._runPyTorchExtension(step)
        else:
            self._runPip(step, deps)

    def _runPyTorchExtension(self, step: Step) -> None:
        import PyTorchUtils  # Why here: the PyTorch extension is optional; the plan chose it because it is there.

        self.log.appendPlainText(_("The PyTorch extension is installing PyTorch; its output is in the Python console."))
        logic = PyTorchUtils.PyTorchUtilsLogic()
        try:
            torch = logic.installTorch(askConfirmation=False, torchVersionRequirement=f">={step.package.minimum}")
        except TypeError:  # an older PyTorch extension, without the version argument
            torch = logic.installTorch(askConfirmation=False)
        if torch is None:
            raise RuntimeError(_("the PyTorch extension did not install PyTorch"))

    def _runPip(self, step: Step, deps) -> None:
        """``pip install`` one requirement, the other installed packages held at their versions (constraints)."""
        pins = constraints(deps, probe(deps), step.package)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "constraints.txt")
            with open(path, "w", encoding="utf-8") as file:
                file.write("\n".join(pins) + "\n")
            args = [*step.pip_args, "--constraint", path, "--disable-pip-version-check"]
            python = shutil.which("PythonSlicer")
            if not python:  # Slicer's own helper then (its output goes to the Python console only)
                slicer.util.pip_install(args)
                return
            process = slicer.util.launchConsoleProcess(
                [python, "-m", "pip", "install", *args], useStartupEnvironment=False
            )
            last = ""
            while True:
                try:
                    line = process.stdout.readline()
                except UnicodeDecodeError:  # a line in another code page: skipped, as Slicer's own helper does
                    continue
                if not line:
                    break
                line = line.rstrip()
                print(line)
                self.log.appendPlainText(line)
                last = line or last
                slicer.app.processEvents()
            process.wait()
            if process.returncode != 0:
                raise RuntimeError(
                    _("pip stopped with exit code {code}: {line}").format(code=process.returncode, line=last)
                )

    def _finish(self) -> None:
        """Tell what was installed (and the device PyTorch uses), then reload the module with its real panel."""
        module = self.plan.module
        after = current_plan(module)
        if not after.ready:
            self.installButton.text = _("Retry")
            self.installButton.enabled = after.installable
            self.messageLabel.text = after.message()
            self.showManualCommands(
                _(
                    "Some packages are still missing. Restart Slicer and open the module again, or type this into "
                    "Slicer's Python console:"
                )
            )
            return
        lines = [_("{module}: the Python packages it needs are installed.").format(module=after.title or module)]
        if self.plan.torch_route != TORCH_NOT_NEEDED:
            lines.append(self._torchDevice(self.plan.torch_route))
        restart = replaced_while_loaded(self.plan, sys.modules)
        if restart:
            lines.append(
                _("Slicer must restart to use the new versions of {packages}.").format(packages=", ".join(restart))
            )
            if slicer.util.confirmOkCancelDisplay("\n\n".join(lines) + "\n\n" + _("Restart Slicer now?")):
                slicer.util.restart()
            self.statusLabel.text = "\n".join(lines)
            return
        slicer.util.infoDisplay("\n\n".join(lines), windowTitle=_("WeakAnnotate: Python packages"))
        qt.QTimer.singleShot(0, lambda: slicer.util.reloadScriptedModule(module))

    @staticmethod
    def _torchDevice(route: str) -> str:
        try:
            import torch  # Why here: installed just now; asked which device it will use.

            cuda = bool(torch.cuda.is_available())
            return device_message(route, torch.__version__, cuda, torch.cuda.get_device_name(0) if cuda else "")
        except Exception as error:  # noqa: BLE001 - a broken torch install is reported, not raised
            return _("PyTorch is installed but does not import yet ({error}): restart Slicer.").format(error=error)
