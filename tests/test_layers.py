"""The package's layout: one sub-package per stage, and imports that only run downwards.

Every import is counted, whether at the top of a module, inside a function (the CLI's lazy
imports) or under TYPE_CHECKING: each is a dependency of the module that writes it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "catalogue_purge"
SOURCE = Path(__file__).resolve().parents[1] / "src" / PACKAGE

# Lowest first: a module may import its own rank or a lower one.
SHARED = {"errors", "aws", "engine", "storage"}
STAGES = ("detect", "enforce", "record", "review", "job")
DOOR = {"cli", "cli_review", "synthetic"}


def rank(module: str) -> int:
    """0 for the shared pieces, 1.. for the stages in order, above them the door."""
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else ""
    if head in STAGES:
        return 1 + STAGES.index(head)
    if head in DOOR:
        return 1 + len(STAGES)
    if head in SHARED or head == "":
        return 0
    raise AssertionError(f"{module}: not in a stage, not shared, not at the door; place it")


def module_name(path: Path, root: Path) -> str:
    relative = path.relative_to(root).with_suffix("")
    parts = [root.name, *relative.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> set[str]:
    """The package's modules that the file imports, resolved to module names."""
    modules = {module_name(p, root) for p in root.rglob("*.py")}
    package = module_name(path, root)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import name`: name is a module of the package, or a name inside pkg
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        found.update(t for t in targets if t == root.name or t.startswith(root.name + "."))
    return found


def graph(root: Path) -> dict[str, set[str]]:
    return {module_name(p, root): imports_of(p, root) for p in sorted(root.rglob("*.py"))}


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{importer} imports {imported}"
        for importer, targets in edges.items()
        for imported in targets
        if rank(imported) > rank(importer)
    )


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle found by a depth-first walk (each reported once, from where it was
    entered)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(edges.get(module, ())):
            if target == module or target not in edges:
                continue
            if state.get(target) == 1:
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)
    return found


def test_every_stage_imports_only_the_stages_below_it():
    assert upward_imports(graph(SOURCE)) == []


def test_no_import_cycle():
    assert cycles(graph(SOURCE)) == []


def test_every_stage_says_what_it_is_for_and_what_it_may_import():
    for stage in STAGES:
        init = SOURCE / stage / "__init__.py"
        if not init.exists():
            continue  # a stage not built yet
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and "import" in doc.lower(), f"{init}: say what the stage is for and may import"


def test_every_module_has_a_place():
    for module in graph(SOURCE):
        rank(module)  # raises for a module outside the layout


def test_the_checks_catch_an_upward_import_a_lazy_one_and_a_cycle(tmp_path: Path):
    root = tmp_path / PACKAGE
    for folder in ("detect", "enforce", "record"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text('"""x; imports nothing."""\n')
    (root / "__init__.py").write_text("")
    (root / "errors.py").write_text("")
    (root / "detect" / "sweep.py").write_text(
        "from catalogue_purge.enforce.catalogue import LiveListing\n"
    )
    (root / "enforce" / "catalogue.py").write_text("def f():\n    from ..record import manifest\n")
    (root / "record" / "manifest.py").write_text("from . import report\n")
    (root / "record" / "report.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from catalogue_purge.record.manifest import RunSummary\n"
    )
    edges = graph(root)
    assert upward_imports(edges) == [
        "catalogue_purge.detect.sweep imports catalogue_purge.enforce.catalogue",
        "catalogue_purge.enforce.catalogue imports catalogue_purge.record.manifest",
    ]
    assert cycles(edges) == [
        [
            "catalogue_purge.record.manifest",
            "catalogue_purge.record.report",
            "catalogue_purge.record.manifest",
        ]
    ]


def test_a_module_outside_the_layout_is_named():
    with pytest.raises(AssertionError, match=r"catalogue_purge\.helpers"):
        rank("catalogue_purge.helpers")
