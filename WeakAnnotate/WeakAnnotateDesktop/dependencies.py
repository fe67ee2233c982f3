"""What a module needs installed in desktop Slicer, and the plan to install what is missing (standard library only).

This runs when a module is first opened, before any of the extension's Python dependencies may be installed:
it imports nothing outside the standard library (not even numpy), and finds versions from the installed
packages' metadata without importing them (importing torch alone takes seconds).

* :func:`load` reads ``Resources/requirements-slicer.json``: the packages each module needs, those that come
  with Slicer (checked, never installed), and the headless Slicer core wheels that must never be installed.
* :func:`probe` looks at this Python: installed versions, the PyTorch extension, the platform, a wheel folder.
* :func:`plan_install` (pure) says what is missing, whether it can be installed here, the steps (PyTorch first:
  through the PyTorch extension when it is installed, which picks a CUDA or a CPU build; otherwise the CPU
  build, and the plan says so), and what the user is told.

The Qt side (the confirmation, the progress in the panel) is :mod:`.first_run`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .i18n import _

# WeakAnnotateDesktop/ sits beside the WeakAnnotate module's Resources/, in the source tree
# (WeakAnnotate/Resources) and once installed (qt-scripted-modules/Resources, shared by the four modules).
RESOURCES = Path(__file__).resolve().parent.parent / "Resources"
DEPENDENCY_FILE = RESOURCES / "requirements-slicer.json"
# A folder of wheels to install from instead of the internet (offline computers); see docs/desktop_first_run.md.
WHEEL_FOLDER_VARIABLE = "WEAKANNOTATE_WHEELS"
PYTORCH_EXTENSION = "PyTorchUtils"  # the module of the PyTorch extension (Extensions Manager: "PyTorch")

# How torch gets installed, as the plan decided.
TORCH_NOT_NEEDED = ""
TORCH_KEPT = "kept"  # installed and recent enough: left as it is
TORCH_PYTORCH_EXTENSION = "PyTorchUtils"  # the PyTorch extension picks a CUDA or CPU build
TORCH_CPU = "cpu"  # no PyTorch extension: the CPU build
TORCH_FOLDER = "folder"  # from the wheel folder: whichever build is there


class DependencyFileError(ValueError):
    """The dependency file is missing or malformed (the message names the file and the field)."""


@dataclass(frozen=True)
class Package:
    name: str  # the distribution name pip installs
    import_name: str
    minimum: str
    modules: tuple[str, ...] = ()
    via: str = ""  # "PyTorchUtils": torch, installed through the PyTorch extension when present

    @property
    def requirement(self) -> str:
        return f"{self.name}>={self.minimum}"


@dataclass(frozen=True)
class Dependencies:
    python: str
    slicer_packages: tuple[Package, ...]  # come with Slicer: checked, never installed or upgraded
    packages: tuple[Package, ...]  # installed with pip (torch: see Package.via)
    torch_cpu_index: str
    never_install: tuple[str, ...]  # the headless Slicer core wheels (pyproject.toml): desktop Slicer has its own

    @property
    def modules(self) -> tuple[str, ...]:
        seen: list[str] = []
        for package in self.packages:
            seen += [m for m in package.modules if m not in seen]
        return tuple(seen)

    def needed_by(self, module: str) -> tuple[Package, ...]:
        """The packages ``module`` needs, in the file's order (unknown module: DependencyFileError)."""
        if module not in self.modules:
            raise DependencyFileError(f"{DEPENDENCY_FILE.name}: no package lists the module {module!r}")
        return tuple(p for p in self.packages if module in p.modules)

    def package(self, name: str) -> Package:
        for p in self.slicer_packages + self.packages:
            if p.name == name:
                return p
        raise KeyError(name)


def _text(entry: Mapping, key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DependencyFileError(f"{where}: '{key}' must be a non-empty string, not {value!r}")
    return value.strip()


def _package(entry: object, where: str, *, with_modules: bool) -> Package:
    if not isinstance(entry, dict):
        raise DependencyFileError(f"{where}: each package must be an object, not {entry!r}")
    minimum = _text(entry, "minimum", where)
    if not release(minimum):
        raise DependencyFileError(f"{where}: 'minimum' {minimum!r} is not a version like 1.26")
    modules: tuple[str, ...] = ()
    if with_modules:
        raw = entry.get("modules")
        if not isinstance(raw, list) or not raw or not all(isinstance(m, str) and m for m in raw):
            raise DependencyFileError(f"{where}: 'modules' must be a non-empty list of module names")
        modules = tuple(raw)
    via = entry.get("via", "")
    if via not in ("", PYTORCH_EXTENSION):
        raise DependencyFileError(f"{where}: 'via' must be {PYTORCH_EXTENSION!r} or absent, not {via!r}")
    return Package(_text(entry, "package", where), _text(entry, "import", where), minimum, modules, via)


def load(path: Path | str = DEPENDENCY_FILE) -> Dependencies:
    """The dependency file, checked: a problem raises DependencyFileError naming the field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DependencyFileError(f"cannot read the dependency file {path}: {error}") from error
    if not isinstance(data, dict):
        raise DependencyFileError(f"{path.name}: the file must hold a JSON object")
    lists = {}
    for key in ("slicer_packages", "packages", "never_install"):
        if not isinstance(data.get(key), list):
            raise DependencyFileError(f"{path.name}: '{key}' must be a list")
        lists[key] = data[key]
    deps = Dependencies(
        python=_text(data, "python", path.name),
        slicer_packages=tuple(
            _package(e, f"{path.name} slicer_packages[{i}]", with_modules=False)
            for i, e in enumerate(lists["slicer_packages"])
        ),
        packages=tuple(
            _package(e, f"{path.name} packages[{i}]", with_modules=True) for i, e in enumerate(lists["packages"])
        ),
        torch_cpu_index=_text(data, "torch_cpu_index", path.name),
        never_install=tuple(str(n) for n in lists["never_install"]),
    )
    names = [p.name for p in deps.slicer_packages + deps.packages]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DependencyFileError(f"{path.name}: listed more than once: {twice}")
    forbidden = sorted(canonical(n) for n in names if canonical(n) in {canonical(x) for x in deps.never_install})
    if forbidden:
        raise DependencyFileError(
            f"{path.name}: {forbidden} must never be installed in desktop Slicer (it has its own Slicer core)"
        )
    torches = [p for p in deps.packages if p.via]
    if len(torches) > 1:
        raise DependencyFileError(f"{path.name}: only torch goes through {PYTORCH_EXTENSION}")
    return deps


# --- versions (the standard library has no version parser; release numbers are enough here) ------------------


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): scikit_image == Scikit-Image."""
    return re.sub(r"[-_.]+", "-", name).lower()


def release(version: str) -> tuple[int, ...]:
    """The release numbers of a version, trailing zeros dropped: '2.5.1+cu121' → (2, 5, 1), '1.26.0' → (1, 26).

    Pre-, post- and local parts are ignored (a 1.26 release candidate counts as 1.26); () if it has none.
    """
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", version or "")
    if not match:
        return ()
    numbers = [int(n) for n in match.group(1).split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)


def at_least(version: str | None, minimum: str) -> bool:
    """Whether an installed ``version`` (None: not installed) satisfies ``>= minimum``."""
    if not version:
        return False
    have = release(version)
    return bool(have) and have >= release(minimum)


# --- this Python -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Environment:
    """What is installed where the plan is made."""

    versions: Mapping[str, str | None]  # distribution name → installed version, None (or absent): not installed
    python: tuple[int, int] = (sys.version_info[0], sys.version_info[1])
    platform: str = sys.platform
    pytorch_extension: bool = False  # the PyTorch extension's PyTorchUtils module can be imported
    wheel_folder: str = ""  # install from this folder only (no internet)

    def version(self, name: str) -> str | None:
        return self.versions.get(name)


def installed_version(name: str) -> str | None:
    """The installed version of a distribution, from its metadata (the package is not imported)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def probe(deps: Dependencies, environ: Mapping[str, str] = os.environ) -> Environment:
    """This Python, as the plan needs it."""
    try:
        pytorch_extension = importlib.util.find_spec(PYTORCH_EXTENSION) is not None
    except (ImportError, ValueError):
        pytorch_extension = False
    return Environment(
        versions={p.name: installed_version(p.name) for p in deps.slicer_packages + deps.packages},
        python=(sys.version_info[0], sys.version_info[1]),
        platform=sys.platform,
        pytorch_extension=pytorch_extension,
        wheel_folder=environ.get(WHEEL_FOLDER_VARIABLE, "").strip(),
    )


# --- the plan ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shortfall:
    """A package that is not installed (``have`` None) or older than the module needs."""

    package: Package
    have: str | None

    def describe(self) -> str:
        if self.have is None:
            return _("{package} {minimum} or later (not installed)").format(
                package=self.package.name, minimum=self.package.minimum
            )
        return _("{package} {minimum} or later ({have} is installed)").format(
            package=self.package.name, minimum=self.package.minimum, have=self.have
        )


@dataclass(frozen=True)
class Step:
    """One installation: ``pip install <pip_args>`` (kind "pip"), or torch through the PyTorch extension."""

    package: Package
    kind: str  # "pip" | "PyTorchUtils"
    pip_args: tuple[str, ...] = ()

    @property
    def requirement(self) -> str:
        return self.package.requirement

    def title(self) -> str:
        """What the progress line says while this step runs."""
        if self.kind == TORCH_PYTORCH_EXTENSION:
            return _(
                "PyTorch, through the PyTorch extension (it picks a CUDA or CPU build; its output is in the Python "
                "console)"
            )
        return self.requirement


@dataclass(frozen=True)
class InstallPlan:
    module: str
    missing: tuple[Shortfall, ...] = ()
    blocked: tuple[str, ...] = ()  # what no installation from here can fix (an old Python, Slicer's own numpy)
    steps: tuple[Step, ...] = ()
    torch_route: str = TORCH_NOT_NEEDED
    wheel_folder: str = ""
    torch_cpu_index: str = ""
    title: str = ""  # the module's title, as the messages name it ("" : its name)

    @property
    def ready(self) -> bool:
        return not self.missing and not self.blocked

    @property
    def installable(self) -> bool:
        return bool(self.steps) and not self.blocked

    @property
    def key(self) -> tuple[str, ...]:
        """The same requirements give the same key: what the user already answered once."""
        return tuple(s.requirement for s in self.steps) + self.blocked

    def torch_sentence(self) -> str:
        """How PyTorch is (or will be) provided, or "" when the module does not need it."""
        if self.torch_route == TORCH_PYTORCH_EXTENSION:
            return _(
                "PyTorch is installed through the PyTorch extension, which picks the CUDA build that fits this "
                "computer's NVIDIA driver, or the CPU build when there is none."
            )
        if self.torch_route == TORCH_CPU:
            return _(
                "PyTorch: the CPU build will be installed, because the PyTorch extension is not installed. "
                "Training on the CPU is slow; for a CUDA build on an NVIDIA GPU, install the PyTorch extension "
                "from the Extensions Manager first, restart Slicer and open this module again."
            )
        if self.torch_route == TORCH_FOLDER:
            return _("PyTorch is installed from the wheel folder {folder}: whichever build is there.").format(
                folder=self.wheel_folder
            )
        return ""

    def message(self) -> str:
        """What the panel shows and the confirmation asks (plain text)."""
        module = self.title or self.module
        if self.ready:
            return _("Everything {module} needs is installed.").format(module=module)
        lines: list[str] = []
        if self.blocked:
            lines.append(_("{module} cannot run in this Slicer:").format(module=module))
            lines += [f"  • {reason}" for reason in self.blocked]
            return "\n".join(lines)
        lines.append(_("{module} needs Python packages that this Slicer does not have yet:").format(module=module))
        lines += [f"  • {shortfall.describe()}" for shortfall in self.missing]
        if self.torch_sentence():
            lines += ["", self.torch_sentence()]
        lines.append("")
        if self.wheel_folder:
            lines.append(
                _("They are installed into Slicer's Python with pip, from the folder {folder} (no internet).").format(
                    folder=self.wheel_folder
                )
            )
        else:
            lines.append(
                _(
                    "They are installed into Slicer's Python with pip, from the internet: a few minutes; PyTorch "
                    "is several hundred MB (the CPU build) to a few GB (a CUDA build)."
                )
            )
        return "\n".join(lines)

    def console_commands(self) -> list[str]:
        """The same installation typed into Slicer's Python console (shown when the user declines or it fails)."""
        commands = []
        for step in self.steps:
            if step.kind == TORCH_PYTORCH_EXTENSION:
                commands.append(
                    "import PyTorchUtils; PyTorchUtils.PyTorchUtilsLogic().installTorch("
                    f'askConfirmation=True, torchVersionRequirement=">={step.package.minimum}")'
                )
            else:
                commands.append(f'slicer.util.pip_install("{" ".join(step.pip_args)}")')
        return commands


def _folder_args(folder: str) -> tuple[str, ...]:
    return ("--no-index", "--find-links", folder) if folder else ()


def plan_install(deps: Dependencies, module: str, env: Environment) -> InstallPlan:
    """What ``module`` lacks in ``env`` and how it gets installed (pure: nothing is looked at or changed)."""
    blocked: list[str] = []
    if env.python < release(deps.python)[:2]:
        blocked.append(
            _(
                "Python {have} is older than {need}, which WeakAnnotate needs; Python comes with Slicer: use a "
                "newer Slicer release."
            ).format(have=".".join(str(n) for n in env.python), need=deps.python)
        )
    for package in deps.slicer_packages:
        have = env.version(package.name)
        if not at_least(have, package.minimum):
            blocked.append(
                _(
                    "{package} {minimum} or later is needed ({have}); {package} comes with Slicer and WeakAnnotate "
                    "does not replace it: use a newer Slicer release."
                ).format(
                    package=package.name,
                    minimum=package.minimum,
                    have=have if have else _("not installed"),
                )
            )
    needed = deps.needed_by(module)
    missing = tuple(Shortfall(p, env.version(p.name)) for p in needed if not at_least(env.version(p.name), p.minimum))
    if blocked:
        return InstallPlan(module, missing, tuple(blocked), wheel_folder=env.wheel_folder)
    needs_torch = any(p.via for p in needed)

    torch_route = TORCH_KEPT if needs_torch else TORCH_NOT_NEEDED
    steps: list[Step] = []
    # PyTorch first: a later pip step (monai) would otherwise pull the default torch from PyPI.
    for shortfall in sorted(missing, key=lambda s: not s.package.via):
        package = shortfall.package
        if package.via and env.wheel_folder:
            torch_route = TORCH_FOLDER
            steps.append(Step(package, "pip", (package.requirement, *_folder_args(env.wheel_folder))))
        elif package.via and env.pytorch_extension:
            torch_route = TORCH_PYTORCH_EXTENSION
            steps.append(Step(package, TORCH_PYTORCH_EXTENSION))
        elif package.via:
            torch_route = TORCH_CPU
            # macOS wheels on PyPI are CPU builds already; elsewhere PyPI's default torch is a CUDA build.
            index = () if env.platform == "darwin" else ("--index-url", deps.torch_cpu_index)
            steps.append(Step(package, "pip", (package.requirement, *index)))
        else:
            steps.append(Step(package, "pip", (package.requirement, *_folder_args(env.wheel_folder))))
    return InstallPlan(
        module,
        missing,
        (),
        tuple(steps),
        torch_route,
        env.wheel_folder,
        deps.torch_cpu_index,
    )


def constraints(deps: Dependencies, env: Environment, installing: Package) -> list[str]:
    """pip constraints while ``installing`` one package: every other listed package that is installed and
    recent enough stays at its version, so that no dependency replaces Slicer's numpy or SimpleITK, or the torch
    build the PyTorch extension chose."""
    lines = []
    for package in deps.slicer_packages + deps.packages:
        have = env.version(package.name)
        if package.name != installing.name and at_least(have, package.minimum):
            lines.append(f"{package.name}=={have}")
    return lines


def replaced_while_loaded(plan: InstallPlan, loaded: Iterable[str]) -> list[str]:
    """Packages the plan upgraded that this Python had already imported: Slicer must restart to use them."""
    loaded = set(loaded)
    return [s.package.name for s in plan.missing if s.have is not None and s.package.import_name in loaded]


def device_message(route: str, torch_version: str, cuda_available: bool, device_name: str = "") -> str:
    """What the user is told about PyTorch once it is installed: the GPU it uses, or why it runs on the CPU."""
    if cuda_available:
        return _("PyTorch {version} uses the GPU ({device}).").format(
            version=torch_version, device=device_name or "CUDA"
        )
    if route == TORCH_CPU:
        return _(
            "PyTorch {version} runs on the CPU: the CPU build was installed because the PyTorch extension is not "
            "installed. Training works but is slow. For an NVIDIA GPU: install the PyTorch extension, uninstall "
            "PyTorch in its 'PyTorch Utils' module, restart Slicer and open this module again."
        ).format(version=torch_version)
    return _(
        "PyTorch {version} runs on the CPU: no CUDA GPU is usable (no NVIDIA GPU or driver, or a CPU build of "
        "PyTorch). Training works but is slow; the interactive tools do not need a GPU."
    ).format(version=torch_version)
