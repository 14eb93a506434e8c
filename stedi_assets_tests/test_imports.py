"""The layers import downward only, read from the source (no module is executed, but for
the one subprocess that runs `stedi sql`):

- no import cycle among the package's modules (imports made at module load);
- lake/ is a storage library: it imports neither Dagster nor the app, anywhere in its code;
- publishing and audit are generic: they name no zone module and no table;
- `stedi sql` (like `versions`, `forget` and `vacuum`, which load the same modules) never
  imports Dagster, whose import alone costs seconds."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "stedi_assets"
ZONES = ("stedi_assets.landing", "stedi_assets.trusted", "stedi_assets.curated")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _load_time_nodes(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements run when the module loads: its body and the blocks in it (if, try,
    with), not function or class bodies, and not `if TYPE_CHECKING:` blocks."""
    for node in body:
        if _is_type_checking(node) or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            yield from _load_time_nodes(getattr(node, field, []) or [])


def imports(module: str, at_load_only: bool) -> dict[str, list[str]]:
    """Each module `module` imports -> the names it takes from it (empty for `import x`).
    `from package import module` counts as importing the submodule."""
    tree = ast.parse(MODULES[module].read_text())
    nodes = _load_time_nodes(tree.body) if at_load_only else ast.walk(tree)
    found: dict[str, list[str]] = {}
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.setdefault(alias.name, [])
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.setdefault(node.module, []).extend(a.name for a in node.names)
            for alias in node.names:
                if f"{node.module}.{alias.name}" in MODULES:
                    found.setdefault(f"{node.module}.{alias.name}", [])
    return found


def test_no_import_cycle_among_the_modules() -> None:
    graph = {m: sorted(i for i in imports(m, at_load_only=True) if i in MODULES and i != m) for m in MODULES}
    cycles, done, path = [], set(), []

    def visit(module: str) -> None:
        if module in path:
            cycles.append(" -> ".join(path[path.index(module) :] + [module]))
            return
        if module in done:
            return
        path.append(module)
        for target in graph[module]:
            visit(target)
        path.pop()
        done.add(module)

    for module in graph:
        visit(module)
    assert cycles == []


def test_the_lake_imports_neither_dagster_nor_the_app() -> None:
    offending = [
        f"{module} imports {imported}"
        for module in MODULES
        if module.startswith("stedi_assets.lake.") or module == "stedi_assets.lake"
        for imported in imports(module, at_load_only=False)
        if imported.split(".")[0] in {"dagster", "dagster_aws", "dagster_pyspark"}
        or (imported.startswith("stedi_assets") and not imported.startswith("stedi_assets.lake"))
    ]
    assert offending == []


def test_publishing_and_audit_name_no_zone_and_no_table() -> None:
    # The contract's classes (Table, Column) are generic; its constants name tables.
    classes = {n.name for n in ast.parse(MODULES["stedi_assets.tables"].read_text()).body if isinstance(n, ast.ClassDef)}
    offending = []
    for module in ("stedi_assets.publishing", "stedi_assets.audit"):
        for imported, names in imports(module, at_load_only=False).items():
            if imported.startswith(ZONES):
                offending.append(f"{module} imports {imported}")
            if imported == "stedi_assets.tables":
                offending += [f"{module} imports the table constant {n}" for n in names if n not in classes]
    assert offending == []


def test_stedi_sql_imports_no_dagster(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "stedi_assets.cli", "sql", "SELECT 1 AS one", "--lake", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = [line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")]
    assert loaded and not [m for m in loaded if m.split(".")[0].startswith("dagster")]
