"""The first run in desktop Slicer, tested without Slicer (docs/desktop_first_run.md).

* the dependency file (WeakAnnotate/Resources/requirements-slicer.json): every module's needs, consistent with
  pyproject.toml but never the headless Slicer core wheels, and covering what each module's code imports;
* the install plan (WeakAnnotateDesktop.dependencies.plan_install, pure): what is missing given what is present,
  the steps and their order, whether torch goes through the PyTorch extension or the CPU wheel, the constraints
  that keep Slicer's own packages, and what the user is told;
* that the first-run code needs only the standard library and parses as the Python of older Slicers;
* the sample data the extension ships (the self-tests' phantom) and its Sample Data registration;
* the extension's description for the Extensions Index (WeakAnnotate.json, the root CMakeLists.txt).

The Qt side (the confirmation, the progress, pip running) needs desktop Slicer and is not run here.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import struct
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from WeakAnnotateDesktop import dependencies as dm
from WeakAnnotateDesktop.dependencies import (
    TORCH_CPU,
    TORCH_FOLDER,
    TORCH_KEPT,
    TORCH_NOT_NEEDED,
    TORCH_PYTORCH_EXTENSION,
    DependencyFileError,
    Environment,
    plan_install,
)

ROOT = Path(__file__).resolve().parents[2]
DESKTOP = ROOT / "WeakAnnotate" / "WeakAnnotateDesktop"
MODULES = ["WeakAnnotate", "ExtremePointSeg", "BoxCorrection", "SurfaceTemplate"]
DEPS = dm.load()

SLICER_OK = {"numpy": "1.26.4", "SimpleITK": "2.4.1"}
EVERYTHING = {
    **SLICER_OK,
    "torch": "2.5.1+cu121",
    "scipy": "1.13.1",
    "scikit-image": "0.24.0",
    "nibabel": "5.2.1",
    "monai": "1.4.0",
}


def env(versions=None, *, python=(3, 12), platform="linux", extension=False, folder="") -> Environment:
    return Environment(
        versions=dict(SLICER_OK if versions is None else versions),
        python=python,
        platform=platform,
        pytorch_extension=extension,
        wheel_folder=folder,
    )


def names(plan) -> list[str]:
    return [step.package.name for step in plan.steps]


# --- the dependency file ------------------------------------------------------------------------------------


def test_every_module_has_its_packages():
    assert set(DEPS.modules) == set(MODULES)
    needs = {m: {p.name for p in DEPS.needed_by(m)} for m in MODULES}
    # The interactive modules do not make a user download PyTorch; the hub needs everything.
    assert needs["SurfaceTemplate"] == {"scipy"}
    assert needs["ExtremePointSeg"] == {"scipy", "scikit-image"}
    assert needs["BoxCorrection"] == {"scipy", "torch"}
    assert needs["WeakAnnotate"] == {p.name for p in DEPS.packages}
    assert {p.name for p in DEPS.slicer_packages} == {"numpy", "SimpleITK"}
    assert [p.name for p in DEPS.packages if p.via] == ["torch"]


def _pyproject_requirements() -> dict[str, str]:
    """Distribution name (canonical) → the requirement's operator and version, of pyproject.toml."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    found = {}
    for requirement in data["project"]["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?\s*(==|>=)\s*([\w.+]+)", requirement)
        assert match, f"pyproject.toml: cannot read {requirement!r}"
        found[dm.canonical(match.group(1))] = (match.group(2), match.group(3))
    return found


def test_the_desktop_set_is_not_the_headless_set():
    """Desktop Slicer has its own Slicer core: the wheels pyproject.toml pins for the headless runtime are never
    installed (torch is pinned there too, to the local CPU build; desktop Slicer installs its own)."""
    pyproject = _pyproject_requirements()
    pinned = {name for name, (op, _v) in pyproject.items() if op == "=="}
    assert {dm.canonical(n) for n in DEPS.never_install} == pinned - {"torch"}
    for package in DEPS.slicer_packages + DEPS.packages:
        name = dm.canonical(package.name)
        assert name not in {dm.canonical(n) for n in DEPS.never_install}
        assert name in pyproject, f"{package.name} is needed in Slicer but not by the package (pyproject.toml)"
        op, version = pyproject[name]
        if op == ">=":
            assert dm.release(package.minimum) == dm.release(version), (
                f"{package.name}: the dependency file asks for {package.minimum}, pyproject.toml for {version}"
            )
        else:
            assert dm.at_least(version, package.minimum), f"{package.name} {version} is older than {package.minimum}"
    assert dm.release(DEPS.python) == dm.release(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"].lstrip(">=")
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("python"), "'python' must be a non-empty string"),
        (lambda d: d["packages"][0].pop("minimum"), "packages[0]: 'minimum' must be a non-empty string"),
        (lambda d: d["packages"][1].update(minimum="latest"), "packages[1]: 'minimum' 'latest' is not a version"),
        (lambda d: d["packages"][2].update(modules=[]), "packages[2]: 'modules' must be a non-empty list"),
        (lambda d: d["packages"].append(dict(d["packages"][1])), "listed more than once: ['scipy']"),
        (lambda d: d["packages"][1].update(package="vtk"), "['vtk'] must never be installed in desktop Slicer"),
        (lambda d: d["packages"][1].update(via="pip"), "'via' must be 'PyTorchUtils' or absent"),
        (lambda d: d.update(packages={}), "'packages' must be a list"),
    ],
)
def test_a_broken_dependency_file_names_the_field(tmp_path, change, message):
    data = json.loads(dm.DEPENDENCY_FILE.read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / "requirements-slicer.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DependencyFileError, match=re.escape(message)):
        dm.load(path)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(DependencyFileError, match="cannot read the dependency file"):
        dm.load(path)


# The packages a module's code loads are among those it declares. A fresh interpreter first imports what desktop
# Slicer has anyway (slicer, vtk, numpy, SimpleITK) and the module's declared packages (with whatever they pull
# in themselves), then every WeakAnnotateLib / WeakAnnotateDesktop module the module file imports, noting which
# module imports each new top-level package: one that the extension's own code imports is one the dependency
# file must list for the module. (Imports inside the library's functions, such as torch in the box classifier's
# loader, are listed by hand.)
_TRACE = r"""
import importlib, json, sys
baseline, imports = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name in baseline:
    importlib.import_module(name)
importers = {}


class Spy:
    def find_spec(self, name, path=None, target=None):
        if "." not in name and name not in sys.modules and name not in importers:
            frame = sys._getframe(1)
            while frame and frame.f_globals.get("__name__", "").startswith(("importlib", "_frozen_importlib")):
                frame = frame.f_back
            importers[name] = frame.f_globals.get("__name__", "") if frame else ""
        return None


sys.meta_path.insert(0, Spy())
for module, attributes in imports:
    loaded = importlib.import_module(module)
    for attribute in attributes:
        if not hasattr(loaded, attribute):
            importlib.import_module(f"{module}.{attribute}")
print(json.dumps(importers))
"""
# Needing Qt (desktop Slicer only); their packages are the module files' own (qt) and first_run's (stdlib).
_QT_MODULES = {"WeakAnnotateDesktop.method_form", "WeakAnnotateDesktop.first_run"}


@pytest.mark.parametrize("module", MODULES)
def test_the_module_needs_cover_what_its_code_imports(module):
    tree = ast.parse((ROOT / module / f"{module}.py").read_text(encoding="utf-8"))
    imports = sorted(
        {
            (node.module, tuple(alias.name for alias in node.names))
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and (node.module or "").split(".")[0] in ("WeakAnnotateLib", "WeakAnnotateDesktop")
            and node.module not in _QT_MODULES
        }
    )
    baseline = ["slicer", "vtk"] + [p.import_name for p in DEPS.slicer_packages + DEPS.needed_by(module)]
    result = subprocess.run(
        [sys.executable, "-c", _TRACE, json.dumps(baseline), json.dumps(imports)],
        capture_output=True,
        text=True,
        cwd=ROOT / "WeakAnnotate",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    importers = json.loads(result.stdout.strip().splitlines()[-1])
    ours = ("WeakAnnotateLib", "WeakAnnotateDesktop")
    undeclared = {
        name: importer
        for name, importer in importers.items()
        if importer.startswith(ours)
        and name not in sys.stdlib_module_names
        and not name.startswith(ours)
        and not name.startswith("_")
    }
    assert not undeclared, (
        f"{module}'s code imports {undeclared} (package: importing module), which Resources/requirements-slicer.json "
        f"does not list for it"
    )
    assert "WeakAnnotateLib" in importers, "the trace saw none of the module's imports"


# --- the install plan -----------------------------------------------------------------------------------------


def test_nothing_to_do_when_everything_is_there():
    for module in MODULES:
        plan = plan_install(DEPS, module, env(EVERYTHING))
        assert plan.ready and not plan.steps and not plan.installable
        assert plan.torch_route == (TORCH_KEPT if module in ("WeakAnnotate", "BoxCorrection") else TORCH_NOT_NEEDED)
        assert "is installed" in plan.message()


def test_first_run_with_the_pytorch_extension():
    plan = plan_install(DEPS, "WeakAnnotate", env(extension=True))
    assert not plan.ready and plan.installable and not plan.blocked
    assert [(s.package.name, s.have) for s in plan.missing] == [(p.name, None) for p in DEPS.packages]
    # torch first (monai would otherwise pull PyPI's default torch), through the extension, then pip in file order.
    assert names(plan) == ["torch", "scipy", "scikit-image", "nibabel", "monai"]
    assert plan.steps[0].kind == TORCH_PYTORCH_EXTENSION and plan.steps[0].pip_args == ()
    assert all(s.kind == "pip" and s.pip_args == (s.requirement,) for s in plan.steps[1:])
    assert plan.torch_route == TORCH_PYTORCH_EXTENSION
    message = plan.message()
    assert "torch 2.1 or later (not installed)" in message and "monai 1.4 or later (not installed)" in message
    assert "through the PyTorch extension" in message and "CUDA" in message
    assert plan.console_commands()[0] == (
        "import PyTorchUtils; PyTorchUtils.PyTorchUtilsLogic().installTorch("
        'askConfirmation=True, torchVersionRequirement=">=2.1")'
    )
    assert plan.console_commands()[1] == 'slicer.util.pip_install("scipy>=1.11")'


@pytest.mark.parametrize(("platform", "index"), [("linux", True), ("win32", True), ("darwin", False)])
def test_without_the_pytorch_extension_the_cpu_build_and_the_user_is_told(platform, index):
    plan = plan_install(DEPS, "BoxCorrection", env(platform=platform))
    assert names(plan) == ["torch", "scipy"] and plan.torch_route == TORCH_CPU
    torch = plan.steps[0]
    assert torch.kind == "pip" and torch.pip_args[0] == "torch>=2.1"
    # PyPI's default torch is a CUDA build on Linux and Windows (GBs); macOS wheels are CPU builds already.
    assert ("--index-url" in torch.pip_args) == index
    if index:
        assert torch.pip_args[1:] == ("--index-url", "https://download.pytorch.org/whl/cpu")
    message = plan.message()
    assert "the CPU build will be installed, because the PyTorch extension is not installed" in message
    assert "Extensions Manager" in message
    assert dm.device_message(TORCH_CPU, "2.5.1+cpu", False).startswith("PyTorch 2.5.1+cpu runs on the CPU")
    assert "install the PyTorch extension" in dm.device_message(TORCH_CPU, "2.5.1+cpu", False)


def test_the_interactive_modules_never_install_torch():
    for module in ("SurfaceTemplate", "ExtremePointSeg"):
        for extension in (False, True):
            plan = plan_install(DEPS, module, env(extension=extension))
            assert "torch" not in names(plan) and plan.torch_route == TORCH_NOT_NEEDED
            assert "PyTorch" not in plan.message().split("\n\n")[0]
    assert names(plan_install(DEPS, "SurfaceTemplate", env())) == ["scipy"]


def test_only_what_is_missing_or_too_old():
    present = {**EVERYTHING, "scikit-image": "0.19.3", "monai": None}
    plan = plan_install(DEPS, "WeakAnnotate", env(present, extension=True))
    assert names(plan) == ["scikit-image", "monai"] and plan.torch_route == TORCH_KEPT
    assert "scikit-image 0.22 or later (0.19.3 is installed)" in plan.message()
    assert plan.steps[0].pip_args == ("scikit-image>=0.22",)  # pip upgrades it: the installed one does not satisfy
    # An upgraded package already imported in this session needs a restart; a new one does not.
    assert dm.replaced_while_loaded(plan, {"skimage", "monai", "numpy"}) == ["scikit-image"]
    assert dm.replaced_while_loaded(plan, {"numpy"}) == []


def test_torch_too_old_goes_the_same_way_as_missing():
    plan = plan_install(DEPS, "BoxCorrection", env({**EVERYTHING, "torch": "1.13.1+cu117"}, extension=True))
    assert names(plan) == ["torch"] and plan.torch_route == TORCH_PYTORCH_EXTENSION
    assert "torch 2.1 or later (1.13.1+cu117 is installed)" in plan.message()


@pytest.mark.parametrize(
    ("versions", "python", "reason"),
    [
        ({"numpy": "1.22.4", "SimpleITK": "2.4.1"}, (3, 12), "numpy 1.26 or later is needed (1.22.4)"),
        ({"numpy": "1.26.4"}, (3, 12), "SimpleITK 2.3 or later is needed (not installed)"),
        (SLICER_OK, (3, 9), "Python 3.9 is older than 3.11"),
    ],
)
def test_what_comes_with_slicer_is_never_installed(versions, python, reason):
    """numpy, SimpleITK and Python come with Slicer: too old or missing, the plan says to use a newer Slicer and
    installs nothing (a replaced numpy breaks VTK; Slicer's SimpleITK has its own IO)."""
    plan = plan_install(DEPS, "WeakAnnotate", env(versions, python=python, extension=True))
    assert not plan.ready and not plan.installable and plan.steps == ()
    assert any(reason in line for line in plan.blocked), plan.blocked
    message = plan.message()
    assert "cannot run in this Slicer" in message and "newer Slicer" in message and "pip" not in message


def test_a_wheel_folder_installs_everything_from_it(tmp_path):
    folder = str(tmp_path / "wheels")
    plan = plan_install(DEPS, "WeakAnnotate", env(extension=True, folder=folder))
    assert plan.torch_route == TORCH_FOLDER  # not the PyTorch extension: it would go to the internet
    assert all(s.kind == "pip" and s.pip_args[1:] == ("--no-index", "--find-links", folder) for s in plan.steps)
    assert folder in plan.message() and "no internet" in plan.message()
    probed = dm.probe(DEPS, {dm.WHEEL_FOLDER_VARIABLE: f" {folder} "})
    assert probed.wheel_folder == folder


def test_constraints_keep_slicers_packages_and_the_chosen_torch():
    present = {**SLICER_OK, "torch": "2.5.1+cu121", "scipy": "1.8.0"}
    pins = dm.constraints(DEPS, env(present), DEPS.package("monai"))
    # Installed and recent enough: held at their versions; too old (scipy) or being installed: free.
    assert pins == ["numpy==1.26.4", "SimpleITK==2.4.1", "torch==2.5.1+cu121"]
    assert "torch==2.5.1+cu121" not in dm.constraints(DEPS, env(present), DEPS.package("torch"))


def test_the_question_is_asked_once_per_plan():
    a = plan_install(DEPS, "ExtremePointSeg", env())
    b = plan_install(DEPS, "ExtremePointSeg", env({**SLICER_OK, "nibabel": "5.2.1"}))
    c = plan_install(DEPS, "ExtremePointSeg", env({**SLICER_OK, "scipy": "1.13.1"}))
    assert a.key == b.key != c.key


@pytest.mark.parametrize(
    ("version", "minimum", "ok"),
    [
        ("2.5.1+cu121", "2.1", True),
        ("1.26.0", "1.26", True),
        ("1.26.0rc1", "1.26", True),
        ("0.22.0", "0.22", True),
        ("0.21.99", "0.22", False),
        ("1.9", "1.11", False),
        ("10.0", "9.9.9", True),
        (None, "1.0", False),
        ("unknown", "1.0", False),
    ],
)
def test_versions_compare_by_release_numbers(version, minimum, ok):
    assert dm.at_least(version, minimum) is ok


def test_device_messages():
    assert dm.device_message(TORCH_PYTORCH_EXTENSION, "2.5.1", True, "NVIDIA H200") == (
        "PyTorch 2.5.1 uses the GPU (NVIDIA H200)."
    )
    for route in (TORCH_PYTORCH_EXTENSION, TORCH_KEPT, TORCH_FOLDER):
        text = dm.device_message(route, "2.5.1", False)
        assert "runs on the CPU" in text and "slow" in text and "install the PyTorch extension" not in text


def test_translation_stays_english_outside_slicer_and_uses_the_callers_context(monkeypatch):
    """Outside the application the English text; inside, Slicer's translate with tr's context for the calling
    file ('WeakAnnotateDesktop.dependencies'), and a translation that changes the placeholders is ignored."""
    import types

    from WeakAnnotateDesktop import i18n

    shortfall = dm.Shortfall(DEPS.package("scipy"), None)
    assert shortfall.describe() == "scipy 1.11 or later (not installed)"
    asked = []
    translations = {"{package} {minimum} or later (not installed)": "{package} ≥ {minimum} (absent)"}
    fake_i18n = types.SimpleNamespace(
        getContext=lambda path: "WeakAnnotateDesktop." + Path(path).stem,
        translate=lambda context, text: asked.append(context) or translations.get(text, text),
    )
    fake_slicer = types.ModuleType("slicer")
    fake_slicer.app = object()
    fake_slicer.i18n = fake_i18n
    monkeypatch.setitem(sys.modules, "slicer", fake_slicer)
    monkeypatch.setitem(sys.modules, "slicer.i18n", fake_i18n)
    assert shortfall.describe() == "scipy ≥ 1.11 (absent)"
    assert asked == ["WeakAnnotateDesktop.dependencies"]
    translations["{package} {minimum} or later (not installed)"] = "{paquet} ≥ {minimum}"
    assert shortfall.describe() == "scipy 1.11 or later (not installed)"
    assert i18n.placeholders("{a} {b:.2f} {{c}}") == {"a", "b:.2f"}


# --- what runs before anything is installed --------------------------------------------------------------------


def test_the_first_run_code_needs_only_the_standard_library():
    """Planning and registering the sample data run before any package is installed: in an interpreter without
    site-packages they import (the desktop package has no other import at its top) and work."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); before = set(sys.modules)\n"
        "from WeakAnnotateDesktop import dependencies as d, sample_data as s\n"
        "deps = d.load(); plan = d.plan_install(deps, 'WeakAnnotate', d.probe(deps)); plan.message()\n"
        "s.source_arguments()\n"
        "print(sorted({m.split('.')[0] for m in set(sys.modules) - before}))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(ROOT / "WeakAnnotate")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = ast.literal_eval(result.stdout.strip())
    assert [m for m in loaded if m not in sys.stdlib_module_names and m != "WeakAnnotateDesktop"] == []


FIRST_RUN_FILES = [ROOT / m / f"{m}.py" for m in MODULES] + [
    DESKTOP / name for name in ("__init__.py", "dependencies.py", "i18n.py", "first_run.py", "sample_data.py")
]


@pytest.mark.parametrize("path", FIRST_RUN_FILES, ids=lambda p: p.name)
def test_the_first_run_code_parses_as_python_3_9(path):
    """A Slicer whose Python is too old must still load the modules, to say so (Slicer 5.8 runs Python 3.9)."""
    source = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(source, filename=str(path), feature_version=(3, 9))
    except SyntaxError as error:
        pytest.fail(f"{path.name} line {error.lineno}: not Python 3.9 syntax: {error.msg}")
    postponed = "from __future__ import annotations" in source
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and any(k.arg in ("strict", "slots", "kw_only") for k in node.keywords):
            pytest.fail(f"{path.name} line {node.lineno}: {ast.unparse(node)[:60]} needs Python 3.10")
        annotations = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            annotations = [a.annotation for a in node.args.args + node.args.kwonlyargs] + [node.returns]
        elif isinstance(node, ast.AnnAssign):
            annotations = [node.annotation]
        for annotation in annotations:
            if not postponed and annotation is not None and "|" in ast.unparse(annotation):
                pytest.fail(f"{path.name} line {node.lineno}: `X | Y` annotations need Python 3.10 here")


# --- the sample data -----------------------------------------------------------------------------------------


def test_the_shipped_sample_is_the_self_tests_phantom(tmp_path, runtime):
    """The files in Resources/SampleData are what write_sample_files builds from the self-tests' synthetic
    phantom (voxels rounded to int16), on the same oblique, anisotropic grid, with its reference segment."""
    import SimpleITK as sitk
    from WeakAnnotateDesktop import sample_data
    from WeakAnnotateLib.scene.mrml_adapter import segment_ids, segment_mask
    from WeakAnnotateLib.scene.segmentation_io import read_segmentation

    rebuilt = sample_data.write_sample_files(tmp_path)
    shipped = [sample_data.SAMPLE_FOLDER / path.name for path in rebuilt]
    assert sum(p.stat().st_size for p in shipped) < 200_000, "keep the shipped sample small"
    new, old = (sitk.ReadImage(str(p[0])) for p in (rebuilt, shipped))
    assert new.GetSize() == old.GetSize() == (56, 48, 40)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(new), sitk.GetArrayFromImage(old))
    for getter in ("GetSpacing", "GetOrigin", "GetDirection"):
        np.testing.assert_allclose(getattr(new, getter)(), getattr(old, getter)(), atol=1e-9)
    assert len(set(np.round(old.GetSpacing(), 6))) == 3, "the phantom's grid is anisotropic"

    from WeakAnnotateLib.files.image_io import read_image

    geometry = read_image(shipped[0]).geometry
    masks = []
    for path in (rebuilt[1], shipped[1]):
        node = read_segmentation(runtime, path)
        ids = segment_ids(node)
        assert [node.GetSegmentation().GetSegment(i).GetName() for i in ids] == [sample_data.SEGMENT_NAME]
        masks.append(segment_mask(node, ids[0], geometry))
    np.testing.assert_array_equal(masks[0], masks[1])
    assert 5_000 < masks[1].sum() < 20_000


def test_the_sample_is_registered_from_the_shipped_files():
    """registerCustomSampleDataSource's arguments: file:// URIs of the shipped files (Sample Data copies them
    into its cache, nothing is downloaded), their SHA-256, node names and Slicer's file types."""
    from WeakAnnotateDesktop import sample_data

    args = sample_data.source_arguments()
    assert args["category"] == "WeakAnnotate" and args["sampleName"] == "WeakAnnotatePhantom"
    fields = ("uris", "fileNames", "nodeNames", "checksums", "loadFileType")
    assert len({len(args[f]) for f in fields}) == 1 and len(args["uris"]) == 2
    assert args["loadFileType"] == ["VolumeFile", "SegmentationFile"]
    for uri, name, checksum in zip(args["uris"], args["fileNames"], args["checksums"], strict=True):
        parsed = urlparse(uri)
        path = Path(unquote(parsed.path))
        assert parsed.scheme == "file" and path.is_file() and path.name == name
        assert checksum == "SHA256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert Path(args["thumbnailFileName"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the extension's description for the Extensions Index ----------------------------------------------------

# The Extensions Index's catalog entry schema, v1.0.1 (Slicer/Slicer: Schemas/slicer-extension-catalog-entry-
# schema-v1.0.1.json, which entries name in "$schema"): required fields, no others, their types.
CATALOG_SCHEMA = {
    "required": ["$schema", "category", "scm_url"],
    "properties": {
        "$schema": str,
        "category": str,
        "scm_url": str,
        "scm_revision": str,
        "scm_type": str,
        "build_dependencies": list,
        "build_subdirectory": str,
        "enabled": bool,
        "tier": int,
    },
    "enums": {"scm_type": ["git", "local"], "tier": [1, 3, 5]},
}
# Categories the Index's check script (scripts/check_description_files.py) accepts, the ones that could fit.
ACCEPTED_CATEGORIES = {"Segmentation", "Active Learning", "Nuclear Medicine", "Quantification", "Examples"}


def _cmake_variable(text: str, name: str) -> str:
    match = re.search(rf'set\(\s*{name}\s+"([^"]*)"\s*\)', text)
    assert match, f'CMakeLists.txt: set({name} "...") is missing'
    return match.group(1)


def test_the_extension_description_validates():
    path = ROOT / "WeakAnnotate.json"
    entry = json.loads(path.read_text(encoding="utf-8"))
    for field in CATALOG_SCHEMA["required"]:
        assert field in entry, f"{path.name}: {field} is required"
    for field, value in entry.items():
        assert field in CATALOG_SCHEMA["properties"], f"{path.name}: {field} is not in the catalog schema"
        kind = CATALOG_SCHEMA["properties"][field]
        assert isinstance(value, kind) and not (kind is int and isinstance(value, bool)), f"{field}: {value!r}"
        if field in CATALOG_SCHEMA["enums"]:
            assert value in CATALOG_SCHEMA["enums"][field], f"{field}: {value!r}"
    assert all(isinstance(d, str) and d for d in entry.get("build_dependencies", []))
    assert re.fullmatch(
        r"https://raw\.githubusercontent\.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-"
        r"entry-schema-v1\.0\.1\.json#?",
        entry["$schema"],
    )
    # What the Index's check script checks besides the schema.
    assert entry["category"] in ACCEPTED_CATEGORIES
    url = urlparse(entry["scm_url"])
    assert url.scheme in ("https", "git") and url.netloc
    assert "slicer" in url.path.rstrip("/").split("/")[-1].lower(), "the repository name should contain Slicer"

    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(r"project\(\s*([^\s)]+)", cmake).group(1) == path.stem
    assert _cmake_variable(cmake, "EXTENSION_CATEGORY") == entry["category"]
    assert _cmake_variable(cmake, "EXTENSION_DEPENDS").split() == entry.get("build_dependencies", ["NA"])
    assert _cmake_variable(cmake, "EXTENSION_HOMEPAGE").rstrip("/") == entry["scm_url"].rstrip("/")
    assert "PyTorch" in entry["build_dependencies"], "torch comes through the PyTorch extension (PyTorchUtils)"


def _image_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_the_icon_and_screenshots_are_files_of_this_repository():
    """EXTENSION_ICONURL and EXTENSION_SCREENSHOTURLS are raw URLs of the extension's repository (the Index
    downloads them): each names a PNG in this checkout; the icon is 128×128."""
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    repository = urlparse(_cmake_variable(cmake, "EXTENSION_HOMEPAGE")).path.strip("/")
    prefix = f"https://raw.githubusercontent.com/{repository}/main/"
    icon = _cmake_variable(cmake, "EXTENSION_ICONURL")
    screenshots = _cmake_variable(cmake, "EXTENSION_SCREENSHOTURLS").split()
    assert screenshots, "no EXTENSION_SCREENSHOTURLS"
    for url in [icon, *screenshots]:
        assert url.startswith(prefix), f"{url} is not a raw URL of {repository} on main"
        path = ROOT / url[len(prefix) :]
        assert path.is_file(), f"{url}: {path.relative_to(ROOT)} is not in the repository"
        width, height = _image_size(path.read_bytes())
        assert width >= 128 and height >= 128
    assert _image_size((ROOT / icon[len(prefix) :]).read_bytes()) == (128, 128)


def test_the_repository_has_a_license_file():
    """The Index's check script requires a license file at the repository root."""
    names = ("LICENSE", "LICENCE", "License.txt", "license.txt", "LICENSE.txt", "COPYING", "COPYING.txt")
    found = [ROOT / n for n in names if (ROOT / n).is_file()]
    if not found:
        pytest.xfail("no LICENSE file at the repository root yet (pyproject.toml says Apache-2.0)")
    assert found[0].read_text(encoding="utf-8", errors="replace").strip()


# --- the first-run panel (first_run.py), driven with stand-ins for Qt and Slicer --------------------------------
# Desktop Slicer is not available here: qt, ctk and slicer are replaced by recording fakes, pip by a process that
# "installs" what it is asked for, so that the panel's flow runs: ask once, install in order with progress, report
# the device, reload the module; or fail and offer Retry; or be declined and show the console commands.


class _Fake:
    """A widget, layout or button: settable properties, connect(), and what the panel calls on them."""

    def __init__(self, *args):
        self.text = args[0] if args and isinstance(args[0], str) else ""
        self.visible = self.enabled = True
        self.value, self.range, self.lines, self.children, self.signals = 0, None, [], [], {}

    def connect(self, signal, callback):
        self.signals[signal] = callback

    def setRange(self, low, high):
        self.range = (low, high)

    def appendPlainText(self, line):
        self.lines.append(line)

    def addWidget(self, widget):
        self.children.append(widget)

    def addStretch(self, *_args):
        pass


class _Process:
    def __init__(self, lines, code):
        pending = iter([line + "\n" for line in lines])
        self.stdout = type("Out", (), {"readline": lambda _self: next(pending, "")})()
        self.returncode = code

    def wait(self):
        return self.returncode


@pytest.fixture
def first_run(monkeypatch):
    """first_run imported against fake qt/ctk/slicer; returns (module, state) where state records what happened
    and holds the 'installed' versions that the fake probe reports."""
    import contextlib
    import importlib
    import types

    state = types.SimpleNamespace(
        installed=dict(SLICER_OK),
        extension=False,
        testing=False,
        confirm=True,
        pip_exit=0,
        scheduled=[],
        commands=[],
        constraints=[],
        infos=[],
        reloaded=[],
        torch_calls=[],
    )

    def launch(command, useStartupEnvironment=True):
        state.commands.append(command)
        state.constraints.append(Path(command[command.index("--constraint") + 1]).read_text().split())
        requirement = command[4]
        if state.pip_exit == 0:
            state.installed[re.split(r"[<>=]", requirement)[0]] = "99.0"
            return _Process([f"Collecting {requirement}", "Successfully installed"], 0)
        return _Process([f"Collecting {requirement}", f"ERROR: No matching distribution found for {requirement}"], 1)

    qt = types.ModuleType("qt")
    for name in ("QLabel", "QPushButton", "QProgressBar", "QPlainTextEdit", "QVBoxLayout"):
        setattr(qt, name, _Fake)
    qt.Qt = types.SimpleNamespace(TextSelectableByMouse=1)
    qt.QTimer = types.SimpleNamespace(singleShot=lambda _ms, callback: state.scheduled.append(callback))
    ctk = types.ModuleType("ctk")
    ctk.ctkCollapsibleButton = _Fake
    slicer = types.ModuleType("slicer")
    slicer.app = types.SimpleNamespace(testingEnabled=lambda: state.testing, processEvents=lambda *a: None)
    slicer.util = types.SimpleNamespace(
        getModule=lambda name: types.SimpleNamespace(title=f"{name} title"),
        confirmOkCancelDisplay=lambda text, **kw: state.confirm,
        infoDisplay=lambda text, **kw: state.infos.append(text),
        launchConsoleProcess=launch,
        pip_install=lambda args: pytest.fail("PythonSlicer is found: pip runs in the panel"),
        reloadScriptedModule=state.reloaded.append,
        restart=lambda: pytest.fail("no restart expected"),
        WaitCursor=contextlib.nullcontext,
    )

    class PyTorchUtilsLogic:
        def installTorch(self, askConfirmation=True, torchVersionRequirement=None):
            state.torch_calls.append((askConfirmation, torchVersionRequirement))
            state.installed["torch"] = "2.5.1+cu121"
            return object()

    for name, module in (("qt", qt), ("ctk", ctk), ("slicer", slicer)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic))
    monkeypatch.delitem(sys.modules, "WeakAnnotateDesktop.first_run", raising=False)
    module = importlib.import_module("WeakAnnotateDesktop.first_run")
    monkeypatch.setattr(module, "probe", lambda deps: env(dict(state.installed), extension=state.extension))
    monkeypatch.setattr(module.shutil, "which", lambda name: "/slicer/bin/PythonSlicer")
    module._answered.clear()
    yield module, state
    module._answered.clear()


def _widget():
    import types

    return types.SimpleNamespace(layout=_Fake())


def test_panel_nothing_missing_lets_setup_go_on(first_run):
    module, state = first_run
    state.installed = dict(EVERYTHING)
    widget = _widget()
    assert module.dependencies_ready(widget, "BoxCorrection") is True
    assert widget.layout.children == [] and state.scheduled == []


def test_panel_asks_once_installs_with_progress_and_reloads(first_run):
    module, state = first_run
    widget = _widget()
    assert module.dependencies_ready(widget, "BoxCorrection") is False
    panel = widget._weakAnnotateInstallPanel
    assert "BoxCorrection title needs Python packages" in panel.messageLabel.text
    assert "the CPU build will be installed" in panel.messageLabel.text and panel.installButton.visible
    assert len(state.scheduled) == 1  # the one question, once the panel shows
    state.scheduled.pop()()
    # torch first from the CPU index, then scipy, each with the installed packages held (constraints).
    assert [c[4:] for c in state.commands] == [
        [
            "torch>=2.1",
            "--index-url",
            "https://download.pytorch.org/whl/cpu",
            "--constraint",
            ANY_PATH,
            "--disable-pip-version-check",
        ],
        ["scipy>=1.11", "--constraint", ANY_PATH, "--disable-pip-version-check"],
    ]
    assert [c[:4] for c in state.commands] == [["/slicer/bin/PythonSlicer", "-m", "pip", "install"]] * 2
    # The torch just installed is held while scipy installs.
    assert state.constraints == [
        ["numpy==1.26.4", "SimpleITK==2.4.1"],
        ["numpy==1.26.4", "SimpleITK==2.4.1", "torch==99.0"],
    ]
    assert panel.progressBar.range == (0, 2) and panel.progressBar.value == 2
    assert "Successfully installed" in panel.log.lines
    assert len(state.infos) == 1 and "the Python packages it needs are installed" in state.infos[0]
    assert "runs on the CPU" in state.infos[0]  # this torch has no CUDA: the user is told
    assert state.scheduled and state.reloaded == []
    state.scheduled.pop()()
    assert state.reloaded == ["BoxCorrection"]
    # Opened again in this session with the same plan: not asked again.
    state.installed = dict(SLICER_OK)
    module.dependencies_ready(_widget(), "BoxCorrection")
    assert state.scheduled == []


def test_panel_installs_torch_through_the_pytorch_extension_without_asking_again(first_run):
    module, state = first_run
    state.extension = True
    widget = _widget()
    module.dependencies_ready(widget, "BoxCorrection")
    assert "through the PyTorch extension" in widget._weakAnnotateInstallPanel.messageLabel.text
    state.scheduled.pop()()
    assert state.torch_calls == [(False, ">=2.1")]  # our one question was the confirmation
    assert [c[4] for c in state.commands] == ["scipy>=1.11"]
    assert state.constraints == [["numpy==1.26.4", "SimpleITK==2.4.1", "torch==2.5.1+cu121"]]


def test_panel_failure_shows_pips_error_and_offers_retry(first_run):
    module, state = first_run
    state.pip_exit = 1
    widget = _widget()
    module.dependencies_ready(widget, "SurfaceTemplate")
    state.scheduled.pop()()
    panel = widget._weakAnnotateInstallPanel
    assert panel.installButton.text == "Retry" and panel.installButton.enabled
    assert panel.statusLabel.text.startswith(
        "Installing scipy>=1.11 failed: pip stopped with exit code 1: ERROR: No matching distribution found"
    )
    assert not panel.progressBar.visible and state.infos == [] and state.scheduled == []
    state.pip_exit = 0
    panel.installButton.signals["clicked(bool)"]()  # Retry
    assert state.installed["scipy"] == "99.0" and len(state.infos) == 1


def test_panel_declined_shows_the_console_commands_and_installs_nothing(first_run):
    module, state = first_run
    state.confirm = False
    widget = _widget()
    module.dependencies_ready(widget, "ExtremePointSeg")
    state.scheduled.pop()()
    panel = widget._weakAnnotateInstallPanel
    assert state.commands == [] and panel.installButton.visible and panel.installButton.enabled
    assert panel.statusLabel.text.startswith("Nothing was installed. Click Install")
    assert 'slicer.util.pip_install("scikit-image>=0.22")' in panel.statusLabel.text
    module.dependencies_ready(_widget(), "ExtremePointSeg")
    assert state.scheduled == []  # declined once: not asked again this session


def test_panel_in_testing_mode_and_when_blocked_does_not_ask(first_run):
    module, state = first_run
    state.testing = True
    assert module.dependencies_ready(_widget(), "SurfaceTemplate") is False and state.scheduled == []
    state.testing = False
    state.installed = {"numpy": "1.22.0", "SimpleITK": "2.4.1"}
    widget = _widget()
    assert module.dependencies_ready(widget, "SurfaceTemplate") is False and state.scheduled == []
    panel = widget._weakAnnotateInstallPanel
    assert not panel.installButton.visible and "cannot run in this Slicer" in panel.messageLabel.text
    with pytest.raises(RuntimeError, match="cannot run in this Slicer"):
        module.require_dependencies("SurfaceTemplate")


class _AnyPath:
    def __eq__(self, other):
        return isinstance(other, str) and other.endswith("constraints.txt")


ANY_PATH = _AnyPath()
