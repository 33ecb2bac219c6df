"""The real web chat built with its pinned libraries (`make frontend` installs frontend/node_modules).

The tests of tiers that must run on a clean clone without npm (unit, template, bridge) use fake frontends;
what needs the real libraries lives here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scripts import build_frontend
from scripts.build_frontend import FRONTEND, build

ATTRIBUTE = re.compile(r"""\b(?:src|href)="([^"]*)\"""")
PREFIX = re.compile(r"assets/[0-9a-f]{16}")
IMPORT = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*)["']([^"']+)["']""")


def test_the_real_page_and_its_modules_only_reference_files_of_the_build(tmp_path: Path) -> None:
    # Given the repository's frontend with its pinned libraries installed (make frontend)
    out = tmp_path / "out"

    # When it is built
    result = build(out, source=FRONTEND)

    # Then every file the page loads exists in the build (a missing one would leave the page unstyled or dead)
    page = (out / "index.html").read_text()
    loaded = [url for url in ATTRIBUTE.findall(page) if not url.startswith("#")]
    assert f"{result.asset_prefix}/app/main.js" in loaded
    for url in loaded:
        assert url.startswith(f"{result.asset_prefix}/"), url
        assert (out / url).is_file(), url

    # And every relative import of every module resolves inside the build (a broken one blanks the page)
    root = out.resolve()
    resolved: set[str] = set()
    for module in sorted(out.rglob("*")):
        if module.suffix not in {".js", ".mjs"}:
            continue
        for specifier in IMPORT.findall(module.read_text(encoding="utf-8")):
            if not specifier.startswith(("./", "../")):
                continue
            target = (module.parent / specifier).resolve()
            assert root in target.parents and target.is_file(), f"{module.relative_to(out)}: {specifier}"
            resolved.add(target.relative_to(root).as_posix())
    prefix = result.asset_prefix
    assert {f"{prefix}/vendor/marked.esm.js", f"{prefix}/vendor/purify.es.mjs"} <= resolved


def test_the_command_builds_the_real_frontend_into_the_folder_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an empty output folder
    out = tmp_path / "out"

    # When the command runs on the repository's frontend
    code = build_frontend.main([str(out)])

    # Then it succeeds and says where the assets went
    assert code == 0
    assert (out / "index.html").is_file()
    assert PREFIX.search(capsys.readouterr().out)
