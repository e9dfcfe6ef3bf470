"""The domain's layering holds where import-linter cannot look: every event and aggregate
class is defined in an aggregate module (the ones the ``independence`` contract lists, so
a stored topic never resolves to a rule module), and no module of the domain hides an
import inside a function or falls back on ``ImportError``."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

import domain.model  # noqa: F401  (every event and aggregate class registered)
from domain.base import AGGREGATE_TYPES, EVENT_TYPES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = ROOT / "domain"


def _aggregate_modules() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    (independent,) = [
        c
        for c in contracts
        if c["type"] == "independence" and all(m.startswith("domain.") for m in c["modules"])
    ]
    return set(independent["modules"])


def test_events_and_aggregates_live_in_aggregate_modules() -> None:
    modules = _aggregate_modules()
    assert "domain.vm" in modules and "domain.host" in modules
    misplaced = sorted(
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in [*EVENT_TYPES.values(), *AGGREGATE_TYPES.values()]
        if cls.__module__.startswith("domain.") and cls.__module__ not in modules
    )
    assert misplaced == []


def _hidden_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    found.append(f"{path.relative_to(ROOT)}:{inner.lineno} import in a function")
        if isinstance(node, ast.ExceptHandler) and "ImportError" in ast.unparse(node.type or node):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} except ImportError")
    return found


def test_no_function_level_imports_or_import_fallbacks_in_domain() -> None:
    files = sorted(DOMAIN.rglob("*.py"))
    assert len(files) > 20
    assert [hit for f in files for hit in _hidden_imports(f)] == []
