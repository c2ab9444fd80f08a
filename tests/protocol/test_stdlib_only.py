"""``dantex.protocol`` is sans-IO: its modules import only the stdlib and itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import dantex.protocol

MODULES = sorted(Path(dantex.protocol.__file__).parent.glob("*.py"))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_imports_stdlib_only(path: Path) -> None:
    """Each module imports the stdlib or dantex.protocol, never Twisted."""
    for name in _imports(path):
        top = name.partition(".")[0]
        assert top in sys.stdlib_module_names or name.startswith("dantex.protocol"), (
            f"{path.name} imports {name}"
        )
