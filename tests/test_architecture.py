"""The shape of the code, checked: no import cycle, layers that import only downwards, pure transforms,
small step modules, and configuration read in one place.

Imports are read from the source with ``ast`` (those inside functions too), so nothing is executed.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "salespulse": ROOT / "include" / "salespulse",
    "salespulse_cli": ROOT / "include" / "salespulse_cli",
    "salespulse_airflow": ROOT / "plugins" / "salespulse_airflow",
}
# Transforms take and return frames: no warehouse, no SQL engine, no steps, no settings object.
PURE = (
    "churn",
    "clusters",
    "clv",
    "customer_snapshot",
    "drivers",
    "ets",
    "forecast",
    "funnel",
    "periods",
    "reconcile",
    "rules",
    "segments",
    "variance",
)
NOT_IN_PURE = (
    "sqlalchemy",
    "salespulse.warehouse",
    "salespulse.schema",
    "salespulse.steps",
    "salespulse.sources",
)
STEP_MODULE_MAX_LINES = 150


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[str]:
    """Every module ``name`` imports, at any depth of its code; ``from a import b`` is ``a.b`` when that is
    a module, else ``a``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield candidate if candidate in MODULES else base


def _graph() -> dict[str, set[str]]:
    return {
        name: {i for i in _imports(name, path) if i in MODULES and i != name}
        for name, path in MODULES.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for child in sorted(graph[node]):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_checker_finds_a_cycle_and_reads_imports_inside_functions() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    # a lazy import inside a function counts: the demo imports the DAG runner's module
    assert "salespulse_cli.local_airflow" in _graph()["salespulse_cli.demo"]


def test_there_is_no_import_cycle_in_include_and_plugins() -> None:
    assert len(MODULES) > 30
    assert _cycles(_graph()) == []


def test_the_domain_package_imports_nothing_from_airflow_or_the_entry_points() -> None:
    offenders = {
        name: sorted(
            i
            for i in _imports(name, path)
            if i.split(".")[0] in ("airflow", "salespulse_airflow", "salespulse_cli")
        )
        for name, path in MODULES.items()
        if name.startswith("salespulse.") or name == "salespulse"
    }
    assert {name: found for name, found in offenders.items() if found} == {}


@pytest.mark.parametrize("module", PURE)
def test_transforms_are_pure(module: str) -> None:
    name = f"salespulse.{module}"
    imported = set(_imports(name, MODULES[name]))
    assert not {i for i in imported if i.startswith(NOT_IN_PURE)}, imported
    source = MODULES[name].read_text(encoding="utf-8")
    assert not re.search(r"\bSettings\b|\bread_frame\b|\btext\(", source)


def test_nothing_below_the_entry_points_reads_the_environment() -> None:
    """Settings.from_env reads the environment; everything else in the domain package takes a Settings.
    The one exception sets the thread budget's variables (OpenMP, BLAS) for a step and the processes it
    starts, and restores them."""
    readers = sorted(
        name
        for name, path in MODULES.items()
        if name.startswith("salespulse.")
        and any(word in path.read_text(encoding="utf-8") for word in ("os.environ", "getenv"))
    )
    assert readers == ["salespulse.config", "salespulse.threads"]
    threads = MODULES["salespulse.threads"].read_text(encoding="utf-8")
    assert "getenv" not in threads and not re.search(r"environ[^\n]*SALESPULSE_", threads)


def test_step_modules_are_small_and_each_returns_a_frozen_summary() -> None:
    steps = {n: p for n, p in MODULES.items() if n.startswith("salespulse.steps.")}
    assert {n.rsplit(".", 1)[1] for n in steps} >= {
        "prepare",
        "ingest",
        "segments",
        "forecast",
        "funnel",
        "variance",
        "report",
    }
    lengths = {n: len(p.read_text(encoding="utf-8").splitlines()) for n, p in steps.items()}
    assert max(lengths.values()) <= STEP_MODULE_MAX_LINES, lengths
    for name, path in steps.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                decorators = [ast.unparse(d) for d in node.decorator_list]
                assert "dataclass(frozen=True)" in decorators, (name, node.name)


def test_dag_files_call_steps_and_the_airflow_glue_only() -> None:
    for path in sorted((ROOT / "dags").glob("*.py")):
        imported = set(_imports(f"dags.{path.stem}", path))
        ours = {i for i in imported if i.split(".")[0].startswith("salespulse")}
        allowed = ("salespulse.steps", "salespulse.model", "salespulse_airflow")
        assert all(i.startswith(allowed) for i in ours), (path.name, ours)
