"""lake/ is a storage library: it imports nothing of the app (tables, settings, privacy...),
so it has no import cycle with the app that uses it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import stedi_assets.lake

LAKE = Path(stedi_assets.lake.__file__).parent


def test_lake_imports_only_itself_of_the_project() -> None:
    offending = []
    for path in sorted(LAKE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offending += [f"{path.name}: {n}" for n in names if n.startswith("stedi_assets") and not n.startswith("stedi_assets.lake")]
    assert offending == []


def test_the_lake_modules_import_in_a_fresh_interpreter() -> None:
    modules = sorted(f"stedi_assets.lake.{p.stem}" for p in LAKE.glob("*.py") if p.stem != "__init__")
    subprocess.run([sys.executable, "-c", f"import {', '.join(modules)}"], check=True, timeout=120)
