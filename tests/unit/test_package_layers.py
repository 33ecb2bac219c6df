"""The shared package's layering: the domain never imports an adapter; adapters import the domain.

Adapters are the modules that talk to something outside the process: `store/` (DynamoDB), `aws/` (the
other AWS services) and `telegram.py` (the Telegram Bot API, whose token it reads from SSM through `aws/`).
`control_plane.py` is the one wiring point that builds them; every other module of the package reaches a
store, the launcher or the pusher through the ControlPlane it is given.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "serverless_openclaw"
ROOT = Path(__file__).resolve().parents[2] / "layers" / "shared" / PACKAGE

ADAPTER_PACKAGES = (f"{PACKAGE}.store", f"{PACKAGE}.aws")
TELEGRAM_ADAPTER = f"{PACKAGE}.telegram"
WIRING = f"{PACKAGE}.control_plane"
TELEGRAM_USERS = {WIRING, f"{PACKAGE}.telegram_bot"}
"""The Bot API client is built by the wiring (give-up notices) and by the webhook, whose job it is."""


def module_name(path: Path) -> str:
    """`serverless_openclaw.store.intake` for layers/shared/serverless_openclaw/store/intake.py."""
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, importer: str) -> Iterator[str]:
    """Every module `source` imports, anywhere in it (lazy imports inside functions too), as full names.

    `from package import name` is `package.name` when that is a module of the package, else `package`.
    """
    package = importer if importer == PACKAGE else importer.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield submodule if _is_module(submodule) else base


def _is_module(name: str) -> bool:
    path = ROOT.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def is_adapter(module: str) -> bool:
    """Whether `module` talks to the world outside the process."""
    return module == TELEGRAM_ADAPTER or any(
        module == package or module.startswith(package + ".") for package in ADAPTER_PACKAGES
    )


def layering_violations(modules: dict[str, str]) -> list[str]:
    """`importer -> imported` for every import that breaks the layering, given {module name: source}."""
    violations = []
    for importer, source in sorted(modules.items()):
        for imported in sorted(set(imported_modules(source, importer))):
            if not imported.startswith(PACKAGE + ".") or not is_adapter(imported):
                continue
            if imported == TELEGRAM_ADAPTER:
                allowed = importer in TELEGRAM_USERS or importer == TELEGRAM_ADAPTER
            else:
                allowed = importer == WIRING or is_adapter(importer)
            if not allowed:
                violations.append(f"{importer} -> {imported}")
    return violations


def package_sources() -> dict[str, str]:
    """{module name: source} of every module of the shared package."""
    return {module_name(path): path.read_text(encoding="utf-8") for path in sorted(ROOT.rglob("*.py"))}


def test_only_adapters_and_the_wiring_point_import_adapters() -> None:
    # Given every module of the shared package
    sources = package_sources()

    # When their imports are checked against the layering
    violations = layering_violations(sources)

    # Then no domain module imports store/, aws/ or the Bot API client (beyond the webhook)
    assert violations == []
    # (and the check did read the package: the wiring point's adapter imports were seen)
    assert f"{PACKAGE}.store.task_state" in set(imported_modules(sources[WIRING], WIRING))
    assert f"{PACKAGE}.routing" in sources and f"{PACKAGE}.store.intake" in sources


def test_a_domain_module_importing_a_store_or_aws_is_reported() -> None:
    # Given domain modules that import adapters in each way Python allows (lazily, relatively, by package)
    modules = {
        f"{PACKAGE}.routing": "from serverless_openclaw.store.intake import IntakeStore\n",
        f"{PACKAGE}.watchdog": "def f():\n    import serverless_openclaw.aws.ecs\n",
        f"{PACKAGE}.api.request": "from ..store import codec\n",
        f"{PACKAGE}.websocket": "from serverless_openclaw import telegram\n",
        f"{PACKAGE}.messages": "from dataclasses import dataclass\n",
        f"{PACKAGE}.store.inbox": "from serverless_openclaw.aws.clients import client\n",
    }

    # When their imports are checked
    violations = layering_violations(modules)

    # Then each domain module's import is named; the plain one and the adapter's own import are not
    assert violations == [
        f"{PACKAGE}.api.request -> {PACKAGE}.store.codec",
        f"{PACKAGE}.routing -> {PACKAGE}.store.intake",
        f"{PACKAGE}.watchdog -> {PACKAGE}.aws.ecs",
        f"{PACKAGE}.websocket -> {PACKAGE}.telegram",
    ]
