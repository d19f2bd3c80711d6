"""The import rules of docs/layout.md, read from the source (every import, module level or inside a function)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import napari_iconmat

PACKAGE = Path(napari_iconmat.__file__).parent
CORE = "napari_iconmat.core"
ROOT_MODULES = {"engine", "registry", "prompt", "reference", "frames", "weights", "errors", "explain", "__init__"}


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
    """The layout part a core module belongs to: 'root', 'io', 'matting', 'engines.X', 'pipeline', ..."""
    if module == CORE:
        return "api"  # core/__init__.py: the public API re-exports from every part but the engines
    rest = module[len(CORE) + 1 :].split(".") if module.startswith(CORE + ".") else []
    if not rest or rest[0] in ROOT_MODULES:
        return "root"
    if rest[0] == "engines":
        return "engines" if len(rest) == 1 else f"engines.{rest[1]}"
    if rest[0] == "evaluation" and len(rest) > 1 and rest[1] == "bench":
        return "evaluation.bench"
    return rest[0]


def _core_files():
    return sorted((PACKAGE / "core").rglob("*.py"))


ALLOWED = {
    "api": {"root", "io", "matting", "pipeline", "evaluation"},
    "root": {"root", "io"},
    "io": {"root", "io"},
    "matting": {"root", "io", "matting"},
    "pipeline": {"root", "io", "matting", "pipeline", "evaluation"},
    "evaluation": {"root", "io", "matting", "evaluation"},
    "evaluation.bench": {"root", "io", "matting", "evaluation", "evaluation.bench", "pipeline"},
}
# the one documented exception: IconMatting's training data reads ICM-57 with the benchmark's readers
EXCEPTIONS = {("napari_iconmat.core.engines.iconmat.data", "evaluation.bench"), ("napari_iconmat.core.engines.iconmat.data", "evaluation")}


def _allowed(part: str) -> set[str]:
    if part.startswith("engines."):
        return {"root", "io", "matting", part}
    return ALLOWED.get(part, {"root"})


def test_every_core_module_belongs_to_a_known_part():
    parts = {_part(_module_name(path)) for path in _core_files()}
    assert parts == {"api", "root", "io", "matting", "pipeline", "evaluation", "evaluation.bench", "engines",
                     "engines.classical", "engines.iconmat", "engines.icmp"}  # fmt: skip


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_imports_follow_the_layout(path):
    module = _module_name(path)
    part = _part(module)
    wrong = sorted(
        name
        for name in _imports(path)
        if _part(name) not in _allowed(part) and (module, _part(name)) not in EXCEPTIONS
    )
    assert not wrong, f"{module} ({part}) imports {wrong}; docs/layout.md allows {sorted(_allowed(part))}"


def test_the_rules_catch_an_engine_importing_another():
    # the check must be able to fail: a classical module importing an iconmat one is reported
    path = PACKAGE / "core" / "engines" / "classical" / "engine.py"
    names = _imports(path, path.read_text() + "\nfrom ..iconmat import model\n")
    assert "napari_iconmat.core.engines.iconmat.model" in names
    assert _part("napari_iconmat.core.engines.iconmat.model") not in _allowed(_part(_module_name(path)))
