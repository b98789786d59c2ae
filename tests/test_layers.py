"""Imports point down the layers of docs/architecture.md ("Layers"), with no circle, nested imports too.

Every module of app/ and agents/ has a layer (the longest prefix in `LAYERS` names it) and imports
only from its own layer or lower ones; imports inside functions count like the others, so none
can hide a circle; `app.settings` imports nothing of the project.
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "agents", "devstack")

LAYERS: tuple[tuple[str, ...], ...] = (
    # 0. Leaves: the vocabulary and the instruments, no I/O client.
    (
        "app.settings",
        "app.errors",
        "app.schemas",
        "app.fate",
        "app.redis_keys",
        "app.tokens",
        "app.polling",
        "app.last_good",
        "app.prices",
        "app.observability",
    ),
    # 1. Clients: Kafka, Redis, the LLM.
    ("app.kafka", "app.redis_client", "app.llm"),
    # 2. Features, each over the clients.
    (
        "app.signals",
        "app.knowledge",
        "app.guard",
        "app.prompts",
        "app.tools",  # the tools the LLM may call, over the context store and the LLM's tool interface
        "app.handoff",
        "app.context",
        "app.observability.health",  # readiness, asked of the clients
    ),
    # 3. The message path.
    ("app.resources", "app.pipeline"),
    # 4. The worker.
    ("agents", "app.worker"),
    # 5. Commands beside the worker.
    (
        "app.chat",
        "app.prompts.cli",
        "app.knowledge.cli",
        "app.prompts.studio",
        "app.operator_tools",
        "devstack",
        "app.main",
    ),
)
ROOT_PACKAGE = "app"
"""app/__init__.py, a docstring only: below everything, and no prefix of the others' layers."""


@dataclass(frozen=True)
class Import:
    """One project import: who imports what, where, and whether inside a function or block."""

    source: str
    target: str
    line: int
    nested: bool


def modules(root: Path) -> dict[str, Path]:
    """The project's modules under `root`, by dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(root: Path) -> Iterator[Import]:
    """Every import of a project module by a project module, at any depth of the file."""
    known = modules(root)
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                # `from app.observability import metrics` imports the module app.observability.metrics.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    yield Import(name, target, node.lineno, node.col_offset > 0)


def layer_of(module: str) -> int:
    """The layer of the longest prefix in LAYERS naming `module`; ValueError when none does."""
    if module == ROOT_PACKAGE:
        return 0
    best: tuple[int, int] | None = None
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), level)
    if best is None:
        raise ValueError(f"{module} has no layer: add it to LAYERS and to docs/architecture.md")
    return best[1]


def problems(root: Path) -> list[str]:
    """What breaks the rules under `root`: upward imports, a leaf importing, circles, unplaced modules."""
    found, layers = [], {}
    for name in modules(root):
        try:
            layers[name] = layer_of(name)
        except ValueError as error:
            found.append(str(error))
    graph: dict[str, set[str]] = {name: set() for name in layers}
    for edge in imports(root):
        graph.setdefault(edge.source, set()).add(edge.target)
        where = f"{edge.source}:{edge.line}{' (inside a function or block)' if edge.nested else ''}"
        if edge.source == "app.settings":
            found.append(f"{where} imports {edge.target}: settings imports nothing of the project")
        elif layers.get(edge.target, 0) > layers.get(edge.source, len(LAYERS)):
            found.append(f"{where} imports {edge.target}, a higher layer")
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        found.append(f"import circle: {' -> '.join(error.args[1])}")
    return found


def test_imports_point_down_the_layers_with_no_circle() -> None:
    assert problems(ROOT) == []


def test_the_layers_name_the_project_s_packages_only_where_they_exist() -> None:
    known = modules(ROOT)
    stale = [prefix for layer in LAYERS for prefix in layer if prefix not in known]
    assert stale == []


def _plant(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        (
            {"app/context.py": "import app.pipeline\n", "app/pipeline.py": ""},
            "app.context:1 imports app.pipeline, a higher layer",
        ),
        (
            {"app/settings.py": "def check():\n    from app.prices import PriceTable\n", "app/prices.py": ""},
            "app.settings:2 (inside a function or block) imports app.prices: settings imports nothing",
        ),
        (
            {
                "app/signals/__init__.py": "",
                "app/signals/a.py": "from . import b\n",
                "app/signals/b.py": "from app.signals import a\n",
            },
            "import circle: app.signals.",
        ),
        ({"app/nowhere.py": ""}, "app.nowhere has no layer"),
    ],
)
def test_the_check_finds_an_upward_import_a_leaf_importing_a_circle_and_an_unplaced_module(
    tmp_path: Path, files: dict[str, str], problem: str
) -> None:
    root = _plant(tmp_path, {"app/__init__.py": "", "agents/__init__.py": "", **files})
    assert any(found.startswith(problem) for found in problems(root)), problems(root)
