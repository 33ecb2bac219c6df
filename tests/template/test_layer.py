"""The Lambda layer ships every third-party package the functions import (boto3 comes with the runtime)."""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable, Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six"}
FIRST_PARTY = {"serverless_openclaw", "functions"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _layer_requirements() -> set[str]:
    names = set()
    for line in (ROOT / "layers/shared/requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(_normalise(re.split(r"[\[=<>~! ]", line, maxsplit=1)[0]))
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(nodes: Iterable[ast.AST]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement Python can run: those under `if TYPE_CHECKING:` are read by mypy only."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _runtime_imports(node.orelse)
        else:
            yield from _runtime_imports(ast.iter_child_nodes(node))


def _imported_top_levels() -> dict[str, Path]:
    found: dict[str, Path] = {}
    files = [*ROOT.glob("layers/shared/serverless_openclaw/**/*.py"), *ROOT.glob("functions/*/app.py")]
    for path in files:
        for node in _runtime_imports([ast.parse(path.read_text(), str(path))]):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".", 1)[0], path)
    return found


def test_every_third_party_import_is_a_layer_requirement() -> None:
    # Given the packages the layer declares and the distributions that provide each imported module
    declared = _layer_requirements()
    providers = packages_distributions()

    # When every import of the shared package and the handlers is resolved to its distribution
    missing = []
    for module, where in sorted(_imported_top_levels().items()):
        if module in FIRST_PARTY or module in sys.stdlib_module_names or module == "__future__":
            continue
        dists = {_normalise(d) for d in providers.get(module, [module])}
        if not dists & (declared | RUNTIME_PROVIDED):
            missing.append(f"{module} (imported in {where.relative_to(ROOT)}, from {sorted(dists)})")

    # Then none is missing: a test passing here must not become an ImportError in Lambda
    assert not missing, "not in layers/shared/requirements.txt: " + "; ".join(missing)


def test_layer_requirements_are_pinned() -> None:
    for line in (ROOT / "layers/shared/requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert "==" in line, f"unpinned layer requirement: {line}"
