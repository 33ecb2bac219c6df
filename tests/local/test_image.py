"""How the bridge image's build finds its inputs: apt's mirror, the build context, the interpreter.

The build itself and a run inside the image are tests/e2e/test_image.py (`make image-test`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from local.buildah import ImageError
from local.image import (
    DOCKERFILE,
    apt_mirror,
    bridge_inputs_digest,
    build_context_files,
    make_slim,
    node_version,
    python312_prefix,
)

REPO = Path(__file__).resolve().parents[2]


def test_debootstrap_uses_the_mirror_apt_uses_in_either_sources_format(tmp_path: Path) -> None:
    # Given one machine with a deb822 sources file (security first) and one with a classic sources.list
    deb822 = tmp_path / "deb822" / "sources.list.d"
    deb822.mkdir(parents=True)
    (deb822 / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
    )
    classic = tmp_path / "classic"
    (classic / "sources.list.d").mkdir(parents=True)
    (classic / "sources.list").write_text(
        "# a comment\ndeb http://ppa.example/ubuntu jammy main\n"
        "deb http://other.example/debian bookworm main\n"
    )
    empty = tmp_path / "empty"
    (empty / "sources.list.d").mkdir(parents=True)

    # When the mirror is looked up, Then it is Debian's main archive of each
    assert apt_mirror([deb822.parent]) == "http://mirror.example/debian"
    assert apt_mirror([classic]) == "http://other.example/debian"
    # And without any, Debian's own
    assert apt_mirror([empty]) == "http://deb.debian.org/debian"


def test_the_build_context_is_what_dockerignore_lets_in_and_the_dockerfile_copies() -> None:
    # When the repository's build context is listed
    files = {str(path.relative_to(REPO)) for path in build_context_files(REPO)}

    # Then it holds the bridge, the shared package, their requirements and the locked OpenClaw project, and
    # nothing else
    single = {
        "bridge/requirements.txt",
        "layers/shared/requirements.txt",
        "bridge/openclaw/package.json",
        "bridge/openclaw/package-lock.json",
        "bridge/openclaw/trim.sh",
    }
    assert single | {"bridge/bridge/__main__.py"} <= files
    assert any(name.startswith("layers/shared/serverless_openclaw/") for name in files)
    assert all(
        name in single or name.startswith(("bridge/bridge/", "layers/shared/serverless_openclaw/"))
        for name in files
    ), sorted(files)
    assert not any("__pycache__" in name for name in files)


def _repo(root: Path) -> Path:
    (root / "bridge" / "app").mkdir(parents=True)
    (root / "bridge" / "Dockerfile").write_text("FROM scratch\nCOPY bridge/app /app\n")
    (root / ".dockerignore").write_text("*\n!bridge/app/\n")
    (root / "bridge" / "app" / "main.py").write_text("print('v1')\n")
    (root / "README.md").write_text("docs\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def test_the_image_is_rebuilt_when_a_file_of_its_context_changes_and_only_then(tmp_path: Path) -> None:
    # Given a repository and the tag its bridge image gets
    repo = _repo(tmp_path)
    before = bridge_inputs_digest(repo, "node-base:1", "python-base:1")

    # When a file outside the build context changes, Then the tag stays
    (repo / "README.md").write_text("more docs\n")
    assert bridge_inputs_digest(repo, "node-base:1", "python-base:1") == before

    # When a file the image copies changes, or a base, Then the tag changes
    (repo / "bridge" / "app" / "main.py").write_text("print('v2')\n")
    changed = bridge_inputs_digest(repo, "node-base:1", "python-base:1")
    assert changed != before
    assert bridge_inputs_digest(repo, "node-base:2", "python-base:1") != changed


def test_the_node_base_carries_the_node_the_dockerfile_names(tmp_path: Path) -> None:
    # Given the repository's Dockerfile, and one naming an image that is no node:X.Y.Z
    other = tmp_path / "Dockerfile"
    other.write_text("ARG NODE_IMAGE=node:lts\n")

    # Then the version is read from the first, and the second is refused with the reason
    assert node_version(DOCKERFILE).split(".")[0] == "24"
    with pytest.raises(ImageError, match="node:X.Y.Z"):
        node_version(other)


def test_without_a_shared_library_python_3_12_the_build_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given neither PYTHON312_PREFIX nor pyenv has a shared-library 3.12 (a static build is there)
    static = tmp_path / "versions" / "3.12.4"
    (static / "bin").mkdir(parents=True)
    (static / "bin" / "python3.12").write_text("")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    monkeypatch.delenv("PYTHON312_PREFIX", raising=False)

    # When the Python base looks for its interpreter, Then it fails saying how to build one
    with pytest.raises(ImageError, match="--enable-shared pyenv install 3.12"):
        python312_prefix()

    # And a shared-library build is found
    (static / "lib").mkdir()
    (static / "lib" / "libpython3.12.so.1.0").write_text("")
    assert python312_prefix() == static


def test_the_stand_in_debian_is_slim_like_the_official_bases(tmp_path: Path) -> None:
    # Given a debootstrapped tree with documentation, manual pages, translations and a doc folder that is a
    # link to another package's
    files = [
        "usr/share/doc/git/changelog.gz",
        "usr/share/doc/git/copyright",
        "usr/share/man/man1/git.1.gz",
        "usr/share/locale/de/LC_MESSAGES/git.mo",
        "usr/share/locale/locale.alias",
        "usr/share/info/dir",
        "usr/bin/git",
    ]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    (tmp_path / "usr/share/doc/git-man").symlink_to("git")
    for folder in ("etc/dpkg/dpkg.cfg.d", "etc/apt/apt.conf.d"):
        (tmp_path / folder).mkdir(parents=True)

    # When it is made slim
    make_slim(tmp_path)

    # Then what Debian's -slim images leave out is gone, copyrights and the locale alias stay, and dpkg and
    # apt are told to do the same for every package installed later
    left = sorted(
        str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()
    )
    assert left == [
        "etc/apt/apt.conf.d/docker-clean",
        "etc/dpkg/dpkg.cfg.d/docker",
        "usr/bin/git",
        "usr/share/doc/git/copyright",
        "usr/share/locale/locale.alias",
    ]
    assert "path-exclude /usr/share/doc/*" in (tmp_path / "etc/dpkg/dpkg.cfg.d/docker").read_text()
    assert "/var/cache/apt/archives/*.deb" in (tmp_path / "etc/apt/apt.conf.d/docker-clean").read_text()
