"""The prepared compile cache: seeded into the gateway's TMPDIR when present; missing or damaged, skipped."""

from __future__ import annotations

from pathlib import Path

from bridge.compile_cache import CACHE_FOLDER, prepared_dir, seed
from tests.bridge.test_gateway_process import LogCapture


def prepared(root: Path) -> Path:
    """A prepared cache as `python -m bridge.compile_cache` leaves it (two entries)."""
    entries = root / "compile-cache" / "v24.22.3-x64-964aae3f-0"
    entries.mkdir(parents=True)
    (entries / "44e88211").write_bytes(b"code for one module")
    (entries / "a6b99f3f").write_bytes(b"code for another")
    return root / "compile-cache"


def test_the_prepared_cache_lives_beside_the_installed_tree() -> None:
    # Given the image's and make openclaw's entry points / When / Then
    assert prepared_dir("/opt/openclaw/node_modules/openclaw/openclaw.mjs") == Path(
        "/opt/openclaw/compile-cache"
    )


def test_a_prepared_cache_is_copied_into_the_gateways_tmpdir(tmp_path: Path) -> None:
    # Given a prepared cache
    source = prepared(tmp_path / "opt")
    tmp_dir = tmp_path / "task" / "tmp"

    # When the bridge seeds the gateway's temporary folder with it
    used = seed(source, tmp_dir, log=LogCapture().logger)

    # Then OpenClaw finds the same entries where it looks for its cache, as files of its own it may update
    assert used
    copied = sorted(p.relative_to(tmp_dir / CACHE_FOLDER) for p in (tmp_dir / CACHE_FOLDER).rglob("*"))
    assert copied == sorted(p.relative_to(source) for p in source.rglob("*"))
    entry = next((tmp_dir / CACHE_FOLDER).rglob("44e88211"))
    assert entry.read_bytes() == b"code for one module" and not entry.is_symlink()


def test_a_missing_prepared_cache_only_means_a_slower_boot(tmp_path: Path) -> None:
    # Given no prepared cache (an image built before it existed, a local install that could not prepare it)
    capture = LogCapture()
    tmp_dir = tmp_path / "tmp"

    # When the bridge seeds the gateway's temporary folder
    used = seed(tmp_path / "opt" / "compile-cache", tmp_dir, log=capture.logger)

    # Then nothing is copied, nothing fails, and the log says the boot compiles everything
    assert not used and not (tmp_dir / CACHE_FOLDER).exists()
    assert [r["message"] for r in capture.records] == [
        "no prepared compile cache; OpenClaw compiles its modules at this boot"
    ]


def test_a_damaged_prepared_cache_is_skipped_without_a_half_copy(tmp_path: Path) -> None:
    # Given a prepared cache with an entry that cannot be read (a dangling link, as a broken copy leaves)
    source = prepared(tmp_path / "opt")
    entries = next(source.iterdir())
    (entries / "ffffffff").symlink_to(tmp_path / "gone")
    capture = LogCapture()
    tmp_dir = tmp_path / "tmp"

    # When the bridge seeds the gateway's temporary folder
    used = seed(source, tmp_dir, log=capture.logger)

    # Then it is skipped with a warning, and no partial cache is left for OpenClaw to trip over
    assert not used
    assert not (tmp_dir / CACHE_FOLDER).exists() and list(tmp_dir.iterdir()) == []
    assert capture.records[-1]["message"].startswith("prepared compile cache not usable")


def test_a_restarted_gateway_keeps_the_cache_its_task_already_has(tmp_path: Path) -> None:
    # Given a task whose gateway already has a cache (it was seeded, then the gateway restarted)
    source = prepared(tmp_path / "opt")
    tmp_dir = tmp_path / "tmp"
    (tmp_dir / CACHE_FOLDER / "v24").mkdir(parents=True)
    (tmp_dir / CACHE_FOLDER / "v24" / "newer").write_bytes(b"written by the gateway")

    # When the bridge seeds again
    used = seed(source, tmp_dir, log=LogCapture().logger)

    # Then the gateway's own, newer cache is kept as it is
    assert used
    assert [p.name for p in (tmp_dir / CACHE_FOLDER / "v24").iterdir()] == ["newer"]
