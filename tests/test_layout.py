"""The import rules of docs/layout.md, read from the source (every import, module level or inside a function)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import napari_iconmat

PACKAGE = Path(napari_iconmat.__file__).parent
CORE = "napari_iconmat.core"
ROOT_MODULES = {"engine", "registry", "options", "prompt", "reference", "frames", "weights", "explain", "threads"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, source: str | None = None) -> set[str]:
    """Absolute names of the napari_iconmat modules that ``path`` (or ``source``, as if at ``path``) imports."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source, filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return {name for name in names if name.startswith("napari_iconmat")}


def _part(module: str) -> str:
    """The layout part a module belongs to: 'errors', 'root', 'io', 'matting', 'engines.X', 'pipeline', ..."""
    if module == CORE:
        return "api"  # core/__init__.py: the public API re-exports from every part but the engines
    if not module.startswith(CORE + "."):
        return "faces"  # the CLI, the napari widgets and the package __init__: never imported by core
    rest = module[len(CORE) + 1 :].split(".")
    if rest[0] == "errors":
        return "errors"  # every part may raise the project's errors
    if rest[0] in ROOT_MODULES:
        return "root"
    if rest[0] == "engines":
        return "engines" if len(rest) == 1 else f"engines.{rest[1]}"
    if rest[0] == "evaluation" and len(rest) > 1 and rest[1] == "bench":
        return "evaluation.bench"
    return rest[0]


def _core_files():
    return sorted((PACKAGE / "core").rglob("*.py"))


ALLOWED = {
    "api": {"errors", "root", "io", "matting", "pipeline", "evaluation"},
    "errors": set(),
    "root": {"errors", "root", "io"},
    "io": {"errors", "io"},
    "matting": {"errors", "root", "io", "matting"},
    "pipeline": {"errors", "root", "io", "matting", "pipeline", "evaluation"},
    "evaluation": {"errors", "root", "io", "matting", "evaluation"},
    "evaluation.bench": {"errors", "root", "io", "matting", "evaluation", "evaluation.bench", "pipeline"},
}
# the one documented exception: IconMatting's training data reads ICM-57 with the benchmark's readers
EXCEPTIONS = {("napari_iconmat.core.engines.iconmat.data", "evaluation.bench"), ("napari_iconmat.core.engines.iconmat.data", "evaluation")}


def _allowed(part: str) -> set[str]:
    if part.startswith("engines."):
        return {"errors", "root", "io", "matting", part}
    return ALLOWED.get(part, {"errors", "root"})  # 'engines': the package docstring only


def test_every_core_module_belongs_to_a_known_part():
    parts = {_part(_module_name(path)) for path in _core_files()}
    assert parts == {"api", "errors", "root", "io", "matting", "pipeline", "evaluation", "evaluation.bench", "engines",
                     "engines.classical", "engines.iconmat", "engines.icmp", "engines.sam2"}  # fmt: skip


def _wrong_imports(path: Path, source: str | None = None) -> list[str]:
    module = _module_name(path)
    part = _part(module)
    return sorted(
        name
        for name in _imports(path, source)
        if _part(name) not in _allowed(part) and (module, _part(name)) not in EXCEPTIONS
    )


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_imports_follow_the_layout(path):
    wrong = _wrong_imports(path)
    part = _part(_module_name(path))
    assert not wrong, f"{_module_name(path)} ({part}) imports {wrong}; docs/layout.md allows {sorted(_allowed(part))}"


@pytest.mark.parametrize(
    ("where", "line", "reported"),
    [
        ("engines/classical/engine.py", "from ..iconmat import model", "napari_iconmat.core.engines.iconmat.model"),
        ("matting/trimap.py", "from ..pipeline.run import matte_sequence", "napari_iconmat.core.pipeline.run"),
        ("io/readers.py", "from ..reference import ReferenceQuery", "napari_iconmat.core.reference"),
        ("pipeline/run.py", "from ..engines.classical.engine import ClassicalEngine", "napari_iconmat.core.engines.classical.engine"),
        ("prompt.py", "from .._widget import MattingWidget", "napari_iconmat._widget"),
    ],
)
def test_the_check_reports_a_forbidden_import(where, line, reported):
    # the check must be able to fail: each added line breaks one rule of docs/layout.md
    path = PACKAGE / "core" / where
    assert _wrong_imports(path) == []
    assert reported in _wrong_imports(path, path.read_text() + "\n" + line + "\n")
