"""Static checks of the Slicer extension layout and the four scripted modules.

Runs headless, without Qt or desktop Slicer: the .ui files are parsed as XML and the module .py files with
``ast``, so a widget renamed in Qt Designer, a parameter-node field that no widget binds and no code sets (or
a binding to no field), a binding slicer.parameterNodeWrapper refuses when the panel opens, or a
``self.ui.X`` that the .ui does not define fails here rather than when the panel is opened in Slicer.
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["WeakAnnotate", "ExtremePointSeg", "BoxCorrection", "SurfaceTemplate"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Widget classes that slicer.parameterNodeWrapper can bind (guiConnectors.py), by the annotated type. A
# QComboBox binds a str/bool/int/float only when annotated with Choice([...]) (Annotated[str, Choice(...)]):
# without it connectGui raises "ComboBoxToStringableConnector requires the Choice annotation to be used".
NODE_BINDABLE = {"qMRMLNodeComboBox", "qMRMLSubjectHierarchyTreeView"}
VALUE_BINDABLE = {
    "str": {"QLineEdit", "QTextEdit"},
    "bool": {"QCheckBox", "QPushButton"},
    "int": {"QSpinBox", "QSlider"},
    "float": {"QDoubleSpinBox", "ctkSliderWidget"},
}
CHOICE_BINDABLE = {"QComboBox"}


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _ui_path(module: str) -> Path:
    return ROOT / module / "Resources" / "UI" / f"{module}.ui"


def _py_path(module: str) -> Path:
    return ROOT / module / f"{module}.py"


def _tree(module: str) -> ast.Module:
    path = _py_path(module)
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _ui_root(module: str) -> ET.Element:
    return ET.parse(_ui_path(module)).getroot()


def _widgets(root: ET.Element) -> dict[str, str]:
    """Widget name -> class, for every widget in the .ui."""
    return {w.get("name"): w.get("class") for w in root.iter("widget")}


def _bound_widgets(root: ET.Element) -> dict[str, tuple[str, str]]:
    """SlicerParameterName -> (widget name, widget class)."""
    bound: dict[str, tuple[str, str]] = {}
    for w in root.iter("widget"):
        for prop in w.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                value = prop.findtext("string")
                assert value, f"{w.get('name')!r} has an empty SlicerParameterName"
                assert value not in bound, (
                    f"SlicerParameterName {value!r} is bound to both {bound[value][0]!r} and {w.get('name')!r}"
                )
                bound[value] = (w.get("name"), w.get("class"))
    return bound


def _decorator_name(node: ast.expr) -> str:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _parameter_fields(module: str) -> dict[str, str]:
    """Field name -> annotation source, of the class decorated with @parameterNodeWrapper."""
    classes = [
        node
        for node in _tree(module).body
        if isinstance(node, ast.ClassDef)
        and any(_decorator_name(d) == "parameterNodeWrapper" for d in node.decorator_list)
    ]
    assert len(classes) == 1, f"{module}.py: expected one @parameterNodeWrapper class, found {len(classes)}"
    return {
        stmt.target.id: ast.unparse(stmt.annotation)
        for stmt in classes[0].body
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
    }


def _fields_set_in_code(module: str) -> set[str]:
    """Every X in an assignment ``<something>.X = ...`` of the module file."""
    names = set()
    for node in ast.walk(_tree(module)):
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AugAssign) else []
        )
        names |= {t.attr for t in targets if isinstance(t, ast.Attribute)}
    return names


def _value_type(annotation: str) -> tuple[str, bool]:
    """(the value type, whether a Choice annotation is given) of a field's annotation source."""
    match = re.fullmatch(r"(?:typing\.)?Annotated\[\s*(\w+)\s*,(.*)\]", annotation, re.S)
    if match:
        return match.group(1), "Choice(" in match.group(2)
    return annotation, False


def _self_ui_attributes(module: str) -> set[str]:
    """Every X in ``self.ui.X``."""
    names = set()
    for node in ast.walk(_tree(module)):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui"
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "self"
        ):
            names.add(node.attr)
    return names


# --- the .ui files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", MODULES)
def test_ui_is_a_qmrmlwidget(module):
    path = _ui_path(module)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        pytest.fail(f"{_rel(path)} is not valid XML: {error}")
    assert root.tag == "ui" and root.get("version") == "4.0", f"{_rel(path)}: the root must be <ui version='4.0'>"
    assert root.findtext("class") == module, f"{_rel(path)}: <class> must be {module!r}"
    top = root.find("widget")
    assert top is not None, f"{_rel(path)}: no top-level <widget>"
    assert top.get("class") == "qMRMLWidget", (
        f"{_rel(path)}: the top-level widget is {top.get('class')!r}, not qMRMLWidget"
    )
    assert top.get("name") == module, f"{_rel(path)}: the top-level widget must be named {module!r}"


@pytest.mark.parametrize("module", MODULES)
def test_ui_widget_names_are_unique(module):
    names = [w.get("name") for w in _ui_root(module).iter("widget")]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"{_rel(_ui_path(module))}: duplicate widget names {duplicates}"


@pytest.mark.parametrize("module", MODULES)
def test_ui_declares_its_custom_widgets(module):
    root = _ui_root(module)
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = {cls for cls in _widgets(root).values() if cls.startswith(("ctk", "qMRML", "qSlicer"))}
    missing = sorted(used - declared)
    assert not missing, f"{_rel(_ui_path(module))}: <customwidgets> does not declare {missing}"


@pytest.mark.parametrize("module", MODULES)
def test_ui_mrml_widgets_follow_the_scene(module):
    root = _ui_root(module)
    connected = {
        c.findtext("receiver")
        for c in root.iter("connection")
        if c.findtext("sender") == module
        and c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
        and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
    }
    mrml_widgets = {
        name for name, cls in _widgets(root).items() if cls.startswith(("qMRML", "qSlicer")) and cls != "qMRMLWidget"
    }
    missing = sorted(mrml_widgets - connected)
    assert not missing, (
        f"{_rel(_ui_path(module))}: no mrmlSceneChanged(vtkMRMLScene*) -> setMRMLScene(vtkMRMLScene*) "
        f"connection for {missing}"
    )
    widgets = _widgets(root)
    for c in root.iter("connection"):
        for end in ("sender", "receiver"):
            assert c.findtext(end) in widgets, (
                f"{_rel(_ui_path(module))}: connection {end} {c.findtext(end)!r} is not a widget"
            )


@pytest.mark.parametrize("module", MODULES)
def test_parameter_names_match_the_parameter_node(module):
    ui = _rel(_ui_path(module))
    bound = _bound_widgets(_ui_root(module))
    fields = _parameter_fields(module)
    for name, (widget, _cls) in bound.items():
        assert name in fields, (
            f"{ui}: widget {widget!r} has SlicerParameterName {name!r}, which is not a field of the "
            f"@parameterNodeWrapper class in {module}.py (fields: {sorted(fields)})"
        )
    # A field may be kept by the panel's code instead (a combo box filled at run time, a form's values as
    # JSON); then the module must set it, or nothing ever does.
    set_in_code = _fields_set_in_code(module)
    for field in fields:
        assert field in bound or field in set_in_code, (
            f"{module}.py: parameter node field {field!r} has no widget in {ui} bound to it, and no code sets it"
        )


@pytest.mark.parametrize("module", MODULES)
def test_bound_widgets_can_represent_their_field(module):
    ui = _rel(_ui_path(module))
    fields = _parameter_fields(module)
    for name, (widget, cls) in _bound_widgets(_ui_root(module)).items():
        if name not in fields:
            continue  # reported by test_parameter_names_match_the_parameter_node
        annotation = fields[name]
        if re.search(r"\bvtkMRML\w+Node\b", annotation):
            allowed = NODE_BINDABLE
        else:
            value_type, has_choice = _value_type(annotation)
            allowed = VALUE_BINDABLE.get(value_type, set()) | (CHOICE_BINDABLE if has_choice else set())
        assert cls in allowed, (
            f"{ui}: widget {widget!r} ({cls}) cannot be bound to {name}: {annotation} by "
            f"slicer.parameterNodeWrapper; use one of {sorted(allowed)}"
            + ("" if cls not in CHOICE_BINDABLE else " (a QComboBox needs Annotated[type, Choice([...])])")
        )


@pytest.mark.parametrize("module", MODULES)
def test_self_ui_attributes_exist_in_the_ui(module):
    widgets = _widgets(_ui_root(module))
    for name in sorted(_self_ui_attributes(module)):
        assert name in widgets, f"{module}.py uses self.ui.{name}, but {_rel(_ui_path(module))} has no widget {name!r}"


# --- the module files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", MODULES)
def test_module_folder_layout(module):
    folder = ROOT / module
    cmake = folder / "CMakeLists.txt"
    assert cmake.is_file(), f"{_rel(cmake)} is missing"
    text = cmake.read_text(encoding="utf-8")
    assert re.search(rf"set\(MODULE_NAME\s+{module}\)", text), f"{_rel(cmake)}: MODULE_NAME is not {module}"
    assert "slicerMacroBuildScriptedModule(" in text, f"{_rel(cmake)}: no slicerMacroBuildScriptedModule"
    assert "WITH_GENERIC_TESTS" in text, f"{_rel(cmake)}: slicerMacroBuildScriptedModule without WITH_GENERIC_TESTS"
    assert re.search(r"slicer_add_python_unittest\(\s*SCRIPT\s+\$\{MODULE_NAME\}\.py\s*\)", text), (
        f"{_rel(cmake)}: no slicer_add_python_unittest(SCRIPT ${{MODULE_NAME}}.py)"
    )
    for resource in ("Resources/Icons/${MODULE_NAME}.png", "Resources/UI/${MODULE_NAME}.ui"):
        assert resource in text, f"{_rel(cmake)}: {resource} is not in MODULE_PYTHON_RESOURCES"

    assert _py_path(module).is_file(), f"{_rel(_py_path(module))} is missing"
    assert _ui_path(module).is_file(), f"{_rel(_ui_path(module))} is missing"
    icon = folder / "Resources" / "Icons" / f"{module}.png"
    assert icon.is_file(), f"{_rel(icon)} is missing"
    data = icon.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{_rel(icon)} is not a PNG"
    assert len(data) < 30_000, f"{_rel(icon)} is {len(data)} bytes; keep icons under 30 KB"
    assert not (folder / "__init__.py").exists(), f"{_rel(folder)} must not be a package (no __init__.py)"


def test_extension_cmakelists():
    cmake = ROOT / "CMakeLists.txt"
    text = cmake.read_text(encoding="utf-8")
    for required in (
        "cmake_minimum_required(VERSION 3.16.3)",
        "project(WeakAnnotate)",
        "find_package(Slicer REQUIRED)",
        "include(${Slicer_USE_FILE})",
        "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
        "include(${Slicer_EXTENSION_CPACK})",
    ):
        assert required in text, f"CMakeLists.txt: {required} is missing"
    for variable in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert re.search(rf"set\(EXTENSION_{variable}\s", text), f"CMakeLists.txt: EXTENSION_{variable} is not set"
    for module in MODULES:
        assert re.search(rf"^add_subdirectory\({module}\)", text, re.M), (
            f"CMakeLists.txt: no add_subdirectory({module})"
        )
    icon = ROOT / "Resources" / "Icons" / "WeakAnnotate.png"
    assert icon.read_bytes()[:8] == PNG_SIGNATURE, f"{_rel(icon)} is not a PNG"


@pytest.mark.parametrize("module", MODULES)
def test_module_classes(module):
    classes = {node.name for node in _tree(module).body if isinstance(node, ast.ClassDef)}
    for suffix in ("", "ParameterNode", "Widget", "Logic", "Test"):
        assert f"{module}{suffix}" in classes, f"{module}.py: class {module}{suffix} is missing"


@pytest.mark.parametrize("module", MODULES)
def test_module_test_runs_the_shared_selftests(module):
    source = _py_path(module).read_text(encoding="utf-8")
    test_class = next(
        node for node in _tree(module).body if isinstance(node, ast.ClassDef) and node.name == f"{module}Test"
    )
    body = ast.get_source_segment(source, test_class) or ""
    assert f'run_module_selftests("{module}"' in body, (
        f'{module}Test does not call run_module_selftests("{module}", ...)'
    )


@pytest.mark.parametrize("module", MODULES)
def test_module_compiles_and_imports_no_trame(module):
    path = _py_path(module)
    source = path.read_text(encoding="utf-8")
    compile(source, str(path), "exec")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] != "trame" and not name.startswith("trame_"), f"{_rel(path)} imports {name}"


@pytest.mark.parametrize("module", MODULES)
def test_module_top_level_imports_are_slicers_own(module):
    """At load time Slicer provides slicer, vtk, qt and ctk; everything else is imported where it is used."""
    allowed = {"slicer", "vtk", "qt", "ctk", "__future__"}
    for node in _tree(module).body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] in allowed, (
                f"{module}.py imports {name} at module level; import it inside the method that uses it"
            )


@pytest.mark.parametrize("package", ["WeakAnnotateLib", "WeakAnnotateDesktop"])
def test_weakannotate_cmakelists_installs_the_shared_packages(package):
    """The logic library and the desktop helpers are installed beside the WeakAnnotate module, where all four
    modules import them from."""
    cmake = ROOT / "WeakAnnotate" / "CMakeLists.txt"
    text = cmake.read_text(encoding="utf-8")
    files = sorted((ROOT / "WeakAnnotate" / package).rglob("*.py"))
    assert files, f"WeakAnnotate/{package} has no .py files"
    globbed = re.search(rf"file\(GLOB_RECURSE\s+(\w+)[^)]*{package}/\*\.py", text)
    if globbed:
        variable = globbed.group(1)
        assert re.search(rf"set\(MODULE_PYTHON_SCRIPTS[^)]*\$\{{{variable}\}}", text), (
            f"{_rel(cmake)}: the {package} glob ({variable}) is not in MODULE_PYTHON_SCRIPTS"
        )
        return
    for path in files:
        relative = path.relative_to(ROOT / "WeakAnnotate").as_posix()
        assert relative in text, f"{_rel(cmake)}: {relative} is not in MODULE_PYTHON_SCRIPTS"


# --- what the module files take from the extension's packages --------------------------------------------


def _top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return names


@pytest.mark.parametrize("module", MODULES)
def test_package_imports_of_the_module_files_exist(module):
    """The module files import WeakAnnotateLib and WeakAnnotateDesktop inside their methods (so that they load
    before the dependencies are installed), where a misspelt name would only fail when a button is clicked."""
    packages = ("WeakAnnotateLib", "WeakAnnotateDesktop")
    for node in ast.walk(_tree(module)):
        if not (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in packages):
            continue
        base = ROOT / "WeakAnnotate" / Path(*node.module.split("."))
        source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        where = f"{module}.py line {node.lineno}"
        assert source.is_file(), f"{where}: module {node.module} does not exist"
        defined = _top_level_names(source)
        for alias in node.names:
            submodule = base / f"{alias.name}.py"
            assert alias.name in defined or submodule.is_file() or (base / alias.name).is_dir(), (
                f"{where}: {node.module} defines no {alias.name!r}"
            )


@pytest.mark.parametrize("module", MODULES)
def test_module_files_name_no_training_method(module):
    """The hub's method list and the panels' conditions come from the method registry, not from method names
    in the module files' code or in a .ui's fixed combo-box items (a new method then needs no change here;
    help texts may name one)."""
    from WeakAnnotateLib.methods import registry

    names = set(registry.training_method_names())
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert node.value not in names, f"{module}.py line {node.lineno} names the training method {node.value!r}"
    for widget in _ui_root(module).iter("widget"):
        for item in widget.findall("item"):
            for prop in item.findall("property"):
                assert prop.findtext("string") not in names, (
                    f"{_rel(_ui_path(module))}: {widget.get('name')!r} lists the training method "
                    f"{prop.findtext('string')!r}; fill it from the registry"
                )


# --- user-facing text through _() (Slicer's translation: slicer.i18n) ---------------------------------------

DESKTOP = ROOT / "WeakAnnotate" / "WeakAnnotateDesktop"
# Translation calls: _("text") (slicer.i18n.tr, or WeakAnnotateDesktop.i18n._) and translate("context", "text").
# Slicer's translation tools extract only string literals, and slicer.i18n.tr checks that a translation keeps
# the text's {named} placeholders, which .format(name=...) fills after translation.
TRANSLATE_ONE = {"_", "tr"}
# Where a text reaches the user: properties set on widgets and the module's description ...
USER_TEXT_ATTRIBUTES = {
    "text",
    "toolTip",
    "title",
    "helpText",
    "acknowledgementText",
    "placeholderText",
    "windowTitle",
    "plainText",
}
# ... and the calls that show their (first) text argument: widget setters, Slicer's message boxes, the status line
# helpers, the error a panel shows as its status line, dialog captions and labels made in code.
USER_TEXT_CALLS = {
    "setText",
    "setToolTip",
    "setPlaceholderText",
    "setWindowTitle",
    "setPlainText",
    "appendPlainText",
    "errorDisplay",
    "warningDisplay",
    "infoDisplay",
    "confirmOkCancelDisplay",
    "confirmYesNoDisplay",
    "delayDisplay",
    "showStatusMessage",
    "tryWithErrorDisplay",
    "showing_input_errors",
    "InputError",
    "getExistingDirectory",
    "getOpenFileName",
    "QLabel",
    "QPushButton",
}
_TAG_OR_FIELD = re.compile(r"<[^>]*>|\{[^{}]*\}")


def _translation_files() -> list[Path]:
    """The module files and the desktop package (but i18n.py, which implements _ by calling Slicer's translate)."""
    return [_py_path(m) for m in MODULES] + sorted(p for p in DESKTOP.glob("*.py") if p.name != "i18n.py")


def _call_name(node: ast.Call) -> str:
    return node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")


def _is_translation(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and _call_name(node) in TRANSLATE_ONE | {"translate"}


def _wording(node: ast.AST) -> str:
    """The literal wording of a str constant or f-string, without HTML tags and {fields} ("" if not text)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return _TAG_OR_FIELD.sub("", node.value)
    if isinstance(node, ast.JoinedStr):
        return _TAG_OR_FIELD.sub("", "".join(v.value for v in node.values if isinstance(v, ast.Constant)))
    return ""


def _untranslated_text(expression: ast.AST) -> list[ast.AST]:
    """String literals and f-strings with words that make up the text ``expression`` builds, outside _() and
    translate(): the expression itself, the parts of a + or a conditional, the items of a list (comprehension),
    what str.join joins, a plain literal's .format(). Arguments of other calls (dict keys, paths, the values that
    fill a translated text's placeholders) are not text shown as it is."""
    if _is_translation(expression):
        return []  # its argument is checked by test_translation_calls_take_one_literal
    if isinstance(expression, (ast.Constant, ast.JoinedStr)):
        return [expression] if re.search(r"[A-Za-z]", _wording(expression)) else []
    if isinstance(expression, ast.BinOp) and isinstance(expression.op, ast.Add):
        return _untranslated_text(expression.left) + _untranslated_text(expression.right)
    if isinstance(expression, ast.IfExp):
        return _untranslated_text(expression.body) + _untranslated_text(expression.orelse)
    if isinstance(expression, ast.BoolOp):
        return [n for value in expression.values for n in _untranslated_text(value)]
    if isinstance(expression, ast.List):
        return [n for item in expression.elts for n in _untranslated_text(item)]
    if isinstance(expression, ast.ListComp):
        return _untranslated_text(expression.elt)
    if isinstance(expression, ast.Starred):
        return _untranslated_text(expression.value)
    if isinstance(expression, ast.Call) and isinstance(expression.func, ast.Attribute):
        if expression.func.attr == "join":
            return [n for arg in expression.args for n in _untranslated_text(arg)]
        if expression.func.attr == "format":
            return _untranslated_text(expression.func.value)
    return []


def _user_text_sites(tree: ast.Module) -> list[tuple[str, ast.AST]]:
    """(what, the text expression) of every place a text is shown: property assignments, the user-text calls'
    text argument, and what module-file functions return (status lines built by the logic)."""
    sites: list[tuple[str, ast.AST]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr in USER_TEXT_ATTRIBUTES:
                    sites.append((f".{target.attr} =", node.value))
        elif isinstance(node, ast.Call) and _call_name(node) in USER_TEXT_CALLS:
            # The text is the first argument, except after a parent widget / a status target (dialogs, helpers).
            skip = 1 if _call_name(node) in {"getExistingDirectory", "getOpenFileName", "showing_input_errors"} else 0
            sites += [(f"{_call_name(node)}()", arg) for arg in node.args[skip : skip + 1]]
            sites += [(f"{_call_name(node)}({kw.arg}=)", kw.value) for kw in node.keywords if kw.arg == "windowTitle"]
        elif isinstance(node, ast.Return) and node.value is not None:
            sites.append(("return", node.value))
    return sites


@pytest.mark.parametrize("path", _translation_files(), ids=lambda p: p.name)
def test_translation_calls_take_one_literal(path):
    """_("text") takes one non-empty string literal (not an f-string: a translator could never match it), and its
    {named} placeholders are exactly the keywords of the .format() that fills them."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    formatted = {
        id(node.func.value): node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
        and _is_translation(node.func.value)
    }
    problems = []
    for node in ast.walk(tree):
        if not _is_translation(node):
            continue
        where = f"{_rel(path)} line {node.lineno}"
        count = 2 if _call_name(node) == "translate" else 1
        literal = node.args[count - 1] if len(node.args) == count else None
        if (
            node.keywords
            or literal is None
            or not isinstance(literal, ast.Constant)
            or not isinstance(literal.value, str)
        ):
            problems.append(f"{where}: {ast.unparse(node)[:80]} must take {count} string literal(s)")
            continue
        if not literal.value.strip():
            problems.append(f"{where}: {_call_name(node)}() of an empty string")
            continue
        fields = set(re.findall(r"(?<!\{)\{([^{}]*)\}(?!\})", literal.value))
        call = formatted.get(id(node))
        if any(not f or not f.split(":")[0].isidentifier() for f in fields):
            problems.append(f"{where}: placeholders must be named ({{name}}), found {sorted(fields)}")
        elif call is None and fields:
            problems.append(f"{where}: {sorted(fields)} are never filled (no .format(...))")
        elif call is not None:
            given = {kw.arg for kw in call.keywords}
            wanted = {f.split(":")[0] for f in fields}
            if call.args or given != wanted:
                problems.append(f"{where}: .format() gives {sorted(given)} for the placeholders {sorted(wanted)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "path",
    [_py_path(m) for m in MODULES] + [DESKTOP / "first_run.py", DESKTOP / "dependencies.py"],
    ids=lambda p: p.name,
)
def test_user_facing_text_goes_through_translation(path):
    """Every text the modules (and the first-run panel) show, as a label, tooltip, title, status line, message
    box or InputError, and every status line the module logic returns, is wrapped in _()."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    problems = []
    for what, expression in _user_text_sites(tree):
        for node in _untranslated_text(expression):
            problems.append(f"{_rel(path)} line {node.lineno} ({what}): {ast.unparse(node)[:90]} is not in _()")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module", MODULES)
def test_module_files_define_the_translation_function(module):
    """Slicer's pattern, `from slicer.i18n import tr as _` (and translate), with a fallback where a Slicer before
    5.4 has no slicer.i18n: at module level, in a try whose handler catches ImportError and defines both."""
    tries = [node for node in _tree(module).body if isinstance(node, ast.Try)]
    for node in tries:
        imported = {
            alias.asname or alias.name
            for stmt in node.body
            if isinstance(stmt, ast.ImportFrom) and stmt.module == "slicer.i18n"
            for alias in stmt.names
        }
        if {"_", "translate"} <= imported:
            handler = next((h for h in node.handlers if ast.unparse(h.type or ast.Name("")) == "ImportError"), None)
            assert handler is not None, f"{module}.py: the slicer.i18n import has no `except ImportError` fallback"
            defined = {stmt.name for stmt in handler.body if isinstance(stmt, ast.FunctionDef)}
            assert {"_", "translate"} <= defined, f"{module}.py: the ImportError fallback must define _ and translate"
            break
    else:
        pytest.fail(f"{module}.py: no `try: from slicer.i18n import tr as _, translate` at module level")
    # `_` as a throwaway name (`_, result = ...`) would hide the translation function in that scope.
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) or isinstance(node, ast.arg):
            name = node.id if isinstance(node, ast.Name) else node.arg
            assert name != "_", f"{module}.py line {node.lineno}: `_` is assigned; it is the translation function"


# --- first use in desktop Slicer: dependencies checked before anything needs them --------------------------


def _method(module: str, cls: str, name: str) -> ast.FunctionDef:
    class_node = next(n for n in _tree(module).body if isinstance(n, ast.ClassDef) and n.name == cls)
    return next(n for n in class_node.body if isinstance(n, ast.FunctionDef) and n.name == name)


@pytest.mark.parametrize("module", MODULES)
def test_setup_checks_the_dependencies_before_using_them(module):
    """The widget's setup() asks WeakAnnotateDesktop.first_run.dependencies_ready(self, "<Module>") and returns
    when it says no, before any other import of the extension's packages: with packages missing, the panel says
    what to do instead of an ImportError's traceback."""
    setup = _method(module, f"{module}Widget", "setup")
    check_line = None
    for node in ast.walk(setup):
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.UnaryOp)
            and isinstance(node.test.operand, ast.Call)
            and _call_name(node.test.operand) == "dependencies_ready"
        ):
            args = node.test.operand.args
            assert len(args) == 2 and ast.unparse(args[0]) == "self", f"{module}.py: dependencies_ready(self, ...)"
            assert isinstance(args[1], ast.Constant) and args[1].value == module, (
                f"{module}.py: dependencies_ready must be asked for {module!r}, not {ast.unparse(args[1])}"
            )
            assert any(isinstance(stmt, ast.Return) for stmt in node.body), (
                f"{module}.py: setup() must return when dependencies_ready() is False"
            )
            check_line = node.lineno
    assert check_line is not None, f"{module}.py: setup() does not call first_run.dependencies_ready"
    for node in ast.walk(setup):
        if (
            isinstance(node, ast.ImportFrom)
            and (node.module or "").split(".")[0] in ("WeakAnnotateLib", "WeakAnnotateDesktop")
            and node.module != "WeakAnnotateDesktop.first_run"
        ):
            assert node.lineno > check_line, (
                f"{module}.py line {node.lineno}: {node.module} is imported before the dependency check"
            )

    from WeakAnnotateDesktop.dependencies import load

    assert module in load().modules, f"Resources/requirements-slicer.json lists no package for {module}"


@pytest.mark.parametrize("module", MODULES)
def test_enter_does_nothing_until_setup_has_finished(module):
    """When setup() stopped at the dependency check there is no logic nor parameter node: enter() must return."""
    enter = _method(module, f"{module}Widget", "enter")
    first = enter.body[1] if isinstance(enter.body[0], ast.Expr) else enter.body[0]  # after the docstring
    assert isinstance(first, ast.If) and ast.unparse(first.test) == "self.logic is None", (
        f"{module}.py: enter() must start with `if self.logic is None: return`"
    )
    assert isinstance(first.body[0], ast.Return)


def test_weakannotate_cmakelists_ships_the_first_run_resources():
    """The dependency file and the sample data are installed with the hub's resources (qt-scripted-modules/
    Resources/, beside WeakAnnotateDesktop/, where the desktop package finds them)."""
    text = (ROOT / "WeakAnnotate" / "CMakeLists.txt").read_text(encoding="utf-8")
    resources = ROOT / "WeakAnnotate" / "Resources"
    shipped = [resources / "requirements-slicer.json", *sorted((resources / "SampleData").iterdir())]
    for path in shipped:
        relative = path.relative_to(ROOT / "WeakAnnotate").as_posix()
        assert relative in text, f"WeakAnnotate/CMakeLists.txt: {relative} is not in MODULE_PYTHON_RESOURCES"
