"""scripts/build_frontend.py: the web chat build puts every asset under one hashed folder the page points at.

Every test here builds a small fake frontend in tmp_path, so this tier needs no npm; the build of the real
`frontend/` with its pinned libraries is tested in tests/frontend.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from scripts import build_frontend
from scripts.build_frontend import IMMUTABLE, NO_CACHE, BuildError, build

PREFIX = re.compile(r"assets/[0-9a-f]{16}")

SOURCE_FILES = {
    "index.html": '<!doctype html><link rel="stylesheet" href="assets/styles.css">'
    '<script type="module" src="assets/app/main.js"></script>\n',
    "assets/app/main.js": 'import { marked } from "../vendor/marked.esm.js";\nconsole.log(marked);\n',
    "assets/styles.css": "body { margin: 0; }\n",
    "assets/icon.svg": '<svg xmlns="http://www.w3.org/2000/svg"/>\n',
    "node_modules/marked/lib/marked.esm.js": "export const marked = {};\n",
    "node_modules/dompurify/dist/purify.es.mjs": "export default {};\n",
}


def write_source(root: Path, files: dict[str, str] = SOURCE_FILES) -> Path:
    """A frontend folder as `make frontend` leaves it: the page, its assets and the two pinned libraries."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def files_on_disk(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_source(tmp_path / "frontend")


# ------------------------------------------------------------------------------------------------ layout


def test_every_asset_and_both_libraries_land_under_one_hashed_folder(source: Path, tmp_path: Path) -> None:
    # Given a frontend with a page, a module, a stylesheet, an icon and the two installed libraries
    out = tmp_path / "out"

    # When it is built
    result = build(out, source=source)

    # Then the assets sit under assets/<16 hex>/, the libraries under its vendor/, and nothing else is written
    assert PREFIX.fullmatch(result.asset_prefix)
    prefix = result.asset_prefix
    expected = {
        f"{prefix}/app/main.js",
        f"{prefix}/styles.css",
        f"{prefix}/icon.svg",
        f"{prefix}/vendor/marked.esm.js",
        f"{prefix}/vendor/purify.es.mjs",
        "index.html",
    }
    assert files_on_disk(out) == expected
    assert {f.path for f in result.files} == expected
    assert (out / prefix / "vendor/marked.esm.js").read_text() == "export const marked = {};\n"
    assert (out / prefix / "vendor/purify.es.mjs").read_text() == "export default {};\n"
    assert (out / prefix / "app/main.js").read_bytes() == (source / "assets/app/main.js").read_bytes()
    assert all(f.source == out / f.path for f in result.files)


def test_the_page_points_at_the_hashed_folder_and_is_uploaded_last(source: Path, tmp_path: Path) -> None:
    # Given a page referencing "assets/styles.css" and "assets/app/main.js"
    # When it is built
    result = build(tmp_path / "out", source=source)

    # Then the built page references the hashed paths only, and comes after every asset it references
    page = (tmp_path / "out" / "index.html").read_text()
    prefix = result.asset_prefix
    assert f'href="{prefix}/styles.css"' in page
    assert f'src="{prefix}/app/main.js"' in page
    assert '"assets/styles.css"' not in page
    assert '"assets/app/main.js"' not in page
    assert result.files[-1].path == "index.html"
    assert all(f.path.startswith(f"{prefix}/") for f in result.files[:-1])


# -------------------------------------------------------------------------------------------------- hash


@pytest.mark.parametrize(
    "changed",
    [
        "assets/styles.css",
        "assets/app/main.js",
        "assets/icon.svg",
        "node_modules/marked/lib/marked.esm.js",
        "node_modules/dompurify/dist/purify.es.mjs",
    ],
)
def test_changing_one_byte_of_any_asset_moves_every_asset_to_a_new_folder(
    source: Path, tmp_path: Path, changed: str
) -> None:
    # Given a first build
    before = build(tmp_path / "first", source=source).asset_prefix

    # When one byte of one asset (or pinned library) changes and the frontend is built again
    path = source / changed
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01
    path.write_bytes(bytes(data))
    after = build(tmp_path / "second", source=source).asset_prefix

    # Then browsers holding the old, year-long cached files cannot be served them for the new page
    assert PREFIX.fullmatch(after)
    assert after != before


def test_renaming_an_asset_moves_every_asset_to_a_new_folder(source: Path, tmp_path: Path) -> None:
    # Given a first build
    before = build(tmp_path / "first", source=source).asset_prefix

    # When an asset is renamed without changing its bytes
    (source / "assets/icon.svg").rename(source / "assets/logo.svg")
    after = build(tmp_path / "second", source=source).asset_prefix

    # Then the folder changes too
    assert after != before


def test_the_same_source_always_builds_the_same_folder(source: Path, tmp_path: Path) -> None:
    # Given one frontend, and an identical copy of it elsewhere
    copy = write_source(tmp_path / "copy")

    # When each is built, the first one twice
    first = build(tmp_path / "a", source=source)
    again = build(tmp_path / "b", source=source)
    elsewhere = build(tmp_path / "c", source=copy)

    # Then the asset folder is the same, so an unchanged deploy keeps every browser's cache
    assert first.asset_prefix == again.asset_prefix == elsewhere.asset_prefix
    assert (tmp_path / "a/index.html").read_text() == (tmp_path / "c/index.html").read_text()


# -------------------------------------------------------------------------------------- headers of a file


def test_assets_are_cached_for_a_year_and_the_page_is_revalidated(source: Path, tmp_path: Path) -> None:
    # Given a build
    result = build(tmp_path / "out", source=source)

    # When its files' cache headers are read
    headers = {f.path: f.cache_control for f in result.files}

    # Then every hashed asset is immutable and the page is revalidated on every load
    assert headers.pop("index.html") == NO_CACHE == "no-cache"
    assert headers
    assert set(headers.values()) == {IMMUTABLE}
    assert IMMUTABLE == "public, max-age=31536000, immutable"


def test_each_file_is_served_with_the_content_type_a_browser_accepts(source: Path, tmp_path: Path) -> None:
    # Given a build (a module served as anything else than JavaScript is refused by the browser)
    result = build(tmp_path / "out", source=source)

    # When its files' content types are read
    types = {f.path.rsplit("/", 1)[-1]: f.content_type for f in result.files}

    # Then each has the right one
    assert types["main.js"] == "text/javascript"
    assert types["marked.esm.js"] == "text/javascript"
    assert types["purify.es.mjs"] == "text/javascript"
    assert types["styles.css"] == "text/css; charset=utf-8"
    assert types["icon.svg"] == "image/svg+xml"
    assert types["index.html"] == "text/html; charset=utf-8"


# ------------------------------------------------------------------------------------------------ rebuild


def test_building_again_into_the_same_folder_leaves_no_stale_files(source: Path, tmp_path: Path) -> None:
    # Given a first build, and a stray file someone left in its folder
    out = tmp_path / "out"
    first = build(out, source=source)
    (out / "stray.txt").write_text("left over")

    # When an asset changes and the frontend is built into the same folder
    (source / "assets/styles.css").write_text("body { margin: 1px; }\n")
    second = build(out, source=source)

    # Then the folder holds exactly the second build: the old asset folder and the stray file are gone
    assert second.asset_prefix != first.asset_prefix
    assert not (out / first.asset_prefix).exists()
    assert files_on_disk(out) == {f.path for f in second.files}
    assert (out / second.asset_prefix / "styles.css").read_text() == "body { margin: 1px; }\n"


# ----------------------------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    "library", ["node_modules/marked/lib/marked.esm.js", "node_modules/dompurify/dist/purify.es.mjs"]
)
def test_a_missing_library_says_to_run_make_frontend_and_keeps_the_previous_build(
    source: Path, tmp_path: Path, library: str
) -> None:
    # Given a previous build, and a frontend whose npm libraries are not installed
    out = tmp_path / "out"
    previous = build(out, source=source)
    (source / library).unlink()

    # When it is built
    with pytest.raises(BuildError) as raised:
        build(out, source=source)

    # Then the error names the missing file and the command that installs it, and the old build still serves
    assert "make frontend" in str(raised.value)
    assert library in str(raised.value)
    assert files_on_disk(out) == {f.path for f in previous.files}


def test_a_folder_without_index_html_is_not_a_frontend(source: Path, tmp_path: Path) -> None:
    # Given a folder with assets but no page
    (source / "index.html").unlink()

    # When it is built
    with pytest.raises(BuildError) as raised:
        build(tmp_path / "out", source=source)

    # Then the error says what is missing, and nothing was written
    assert "index.html" in str(raised.value)
    assert not (tmp_path / "out").exists()


def test_the_command_reports_a_broken_frontend_on_stderr_with_exit_code_2(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the command pointed at a frontend whose libraries are not installed
    (source / "node_modules/marked/lib/marked.esm.js").unlink()
    monkeypatch.setattr(build_frontend, "build", functools.partial(build, source=source))

    # When it runs
    code = build_frontend.main([str(tmp_path / "out")])

    # Then it fails with the reason on stderr and nothing on stdout
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("error: ")
    assert "make frontend" in captured.err
    assert captured.out == ""


def test_a_page_that_does_not_reference_assets_keeps_the_previous_build(source: Path, tmp_path: Path) -> None:
    # Given a previous build, and a page whose references the build cannot rewrite (single quotes)
    out = tmp_path / "out"
    previous = build(out, source=source)
    page = source / "index.html"
    page.write_text(page.read_text().replace('"assets/', "'assets/"))

    # When it is built
    with pytest.raises(BuildError, match="does not reference"):
        build(out, source=source)

    # Then the previous build is untouched
    assert files_on_disk(out) == {f.path for f in previous.files}


@pytest.mark.parametrize("where", [".", ".."])
def test_building_over_the_sources_is_refused_and_deletes_nothing(source: Path, where: str) -> None:
    # Given the sources
    before = files_on_disk(source)

    # When the output folder is the source folder or one that holds it
    with pytest.raises(BuildError, match="would hold the sources"):
        build(source / where, source=source)

    # Then every source file is still there
    assert files_on_disk(source) == before
