"""The logic library's layers, read from its imports: each import points down (or within its own package), no
import cycle, no face (Qt, trame, the web package) inside the logic, and no function-level import of the
project's own modules without a comment saying why (docs/architecture.md).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

LIB = Path(__file__).resolve().parents[2] / "WeakAnnotate" / "WeakAnnotateLib"
PACKAGE = "WeakAnnotateLib"
# Lower number = lower layer. A module may import its own layer's package and any lower one.
LAYERS = {
    "core": 0,
    "files": 1,
    "scene": 2,
    "evaluation": 3,
    "data": 4,
    "networks": 5,
    "training": 6,
    "methods": 7,
    "jobs": 8,
    "apps": 9,
    "cli": 10,
}
FACES = ("qt", "ctk", "trame", "trame_slicer", "WeakAnnotateWeb", "WeakAnnotateDesktop", "slicer.util")
# Why allowed: Slicer's terminology files, which the headless runtime's terminologies logic reads, ship there
# (data files, not a face).
FACE_DATA = ("trame_slicer.resources",)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(LIB.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for p in LIB.rglob("*.py")}


def imports_of(path: Path, modules: dict[str, Path]) -> list[tuple[str, int, bool, str]]:
    """(imported module, line, at module level, the source lines around it) of every import in ``path``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    lines = path.read_text(encoding="utf-8").splitlines()
    tree = ast.parse("\n".join(lines), filename=str(path))
    top = {id(n) for n in tree.body}
    for n in tree.body:  # `if TYPE_CHECKING:` / try blocks at module level are still module level
        if isinstance(n, (ast.If, ast.Try)):
            top |= {id(c) for c in ast.walk(n)}
    out = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                root = ".".join(base + ([node.module] if node.module else []))
            else:
                root = node.module or ""
            for alias in node.names:
                full = f"{root}.{alias.name}"
                targets.append(full if full in modules else root)
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        context = _comment_block(lines, getattr(node, "lineno", 1))
        for t in targets:
            out.append((t, node.lineno if hasattr(node, "lineno") else 0, id(node) in top, context))
    return out


def _comment_block(lines: list[str], lineno: int) -> str:
    """The import's line and the block of imports and comments directly above it (where a 'why' is written)."""
    start = lineno - 1
    while start > 0 and lines[start - 1].strip().startswith(("from ", "import ", "#", ")")):
        start -= 1
    return "\n".join(lines[start:lineno])


def layer_of(module: str) -> tuple[int, str]:
    parts = module.split(".")
    if len(parts) < 2:
        return -1, ""
    return LAYERS.get(parts[1], -1), parts[1]


def test_every_subpackage_has_a_layer():
    packages = {p.name for p in LIB.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert packages == set(LAYERS), f"packages without a layer (or layers without a package): {packages ^ set(LAYERS)}"
    loose = sorted(p.name for p in LIB.glob("*.py") if p.name != "__init__.py")
    assert not loose, f"modules outside the layers: {loose}"


def test_imports_point_down_and_faces_stay_out():
    modules = project_modules()
    upward, faces = [], []
    for name, path in modules.items():
        own, own_pkg = layer_of(name)
        for target, line, _, _ in imports_of(path, modules):
            if (target.split(".")[0] in FACES or target in FACES) and target not in FACE_DATA:
                faces.append(f"{name}:{line} imports {target}")
            if not target.startswith(PACKAGE + "."):
                continue
            theirs, their_pkg = layer_of(target)
            if theirs > own:
                upward.append(f"{name}:{line} ({own_pkg}) imports {target} ({their_pkg})")
            if own_pkg == "methods" and target == f"{PACKAGE}.methods.registry" and name != target:
                upward.append(f"{name}:{line}: a method package must not read the registry that lists it")
    assert not upward, "imports that point up:\n" + "\n".join(upward)
    assert not faces, "the logic layer imports a face:\n" + "\n".join(faces)


def test_no_import_cycles():
    modules = project_modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for target, _, _, _ in imports_of(path, modules):
            if target in modules and target != name:
                # importing a submodule runs its package's __init__ first; the inits are empty, so skip them
                graph[name].add(target)
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" → ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(modules):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_function_level_project_imports_say_why():
    modules = project_modules()
    silent = []
    for name, path in modules.items():
        for target, line, at_top, context in imports_of(path, modules):
            if at_top or not target.startswith(PACKAGE):
                continue
            if "why" not in context.lower():
                silent.append(f"{name}:{line} imports {target} inside a function without a 'why' comment")
    assert not silent, "\n".join(silent)


def test_package_inits_hold_no_code():
    # Why: importing one method must not import every other (the registry lists them; __init__ files do not).
    busy = []
    for p in LIB.rglob("__init__.py"):
        body = ast.parse(p.read_text(encoding="utf-8")).body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the layer's docstring
        if body:
            busy.append(str(p.relative_to(LIB)))
    assert not busy, f"package __init__ files with code: {busy}"


def test_every_method_package_is_registered():
    # A method package without a descriptor would be silently missing from every face.
    from WeakAnnotateLib.methods import registry

    packages = {p.name for p in (LIB / "methods").iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert packages == set(registry.packages()), (
        f"method packages without a descriptor.py: {packages - set(registry.packages())}"
    )
    names = [m.name for m in registry.annotation_methods()]
    assert len(names) == len(set(names)) == len(packages)
    assert registry.annotation_methods()[-1].name == "full_supervision"  # the reference is listed last
