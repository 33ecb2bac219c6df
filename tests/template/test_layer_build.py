"""The shared layer ships python3.12 bytecode: `sam build` runs layers/shared/Makefile, which compiles it.

/opt (where Lambda mounts layers) is read-only: without .pyc files in the layer every cold start compiles
the package and its dependencies again. The real build fetches arm64 wheels from PyPI; here the same make
target installs a small dependency from a local folder instead (no network in tests).
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import load_template
from tests.lambda_layer import LAYER_MAKEFILE, LAYER_TARGET, ROOT, build_layer, python312

UNCHECKED_HASH = 0b01
"""PEP 552 flags of a .pyc: hash-based (bit 0), source not checked (bit 1 clear)."""


def _python312() -> str:
    found = python312()
    if found is None:
        pytest.skip(
            "no python3.12 on PATH or under ~/.pyenv (the layer build needs it, as `make build` does)"
        )
    return found


def make_wheel(folder: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """A pure-Python wheel holding `files` (path: source), the way pip expects one."""
    dist_info = f"{name}-{version}.dist-info"
    contents = dict(files)
    contents[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    contents[f"{dist_info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = []
    for path, text in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    contents[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in contents.items():
            archive.writestr(path, text)
    return wheel


def test_the_template_builds_the_layer_with_its_makefile_target() -> None:
    # Given the shared layer's build metadata
    layer = load_template()["Resources"]["SharedLayer"]  # type: ignore[index]

    # Then sam build runs a make target named after the layer's logical id, for arm64
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}
    assert layer["Properties"]["ContentUri"] == "layers/shared/"
    assert (ROOT / layer["Properties"]["ContentUri"] / "Makefile") == LAYER_MAKEFILE
    assert f"\n{LAYER_TARGET}:" in LAYER_MAKEFILE.read_text()


def test_the_real_build_installs_arm64_wheels_for_python312_and_compiles_unchecked(tmp_path: Path) -> None:
    # When make shows (without running) what the layer's target does for sam build
    shown = subprocess.run(
        ["make", "-n", "-f", str(LAYER_MAKEFILE), LAYER_TARGET, f"ARTIFACTS_DIR={tmp_path}"],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("MAKE")},
    ).stdout

    # Then pip installs the layer's pinned requirements as wheels for the Lambda runtime's platform
    pip = next(line for line in shown.replace("\\\n", " ").splitlines() if " -m pip install " in line)
    for expected in (
        "--platform manylinux2014_aarch64",
        "--platform manylinux_2_34_aarch64",
        "--python-version 3.12",
        "--implementation cp",
        "--only-binary=:all:",
        "--no-compile",
        f'-r "{ROOT / "layers/shared/requirements.txt"}"',
        f'--target "{tmp_path}/python"',
    ):
        assert expected in pip, f"{expected} not in: {pip}"
    # And everything is compiled by python3.12, hash-checked never
    assert "-m compileall" in shown and "--invalidation-mode unchecked-hash" in shown


def test_the_build_ships_cpython312_bytecode_for_the_package_and_its_dependencies(tmp_path: Path) -> None:
    python = _python312()
    # Given a dependency as a wheel in a local folder, and the layer's make target pointed at it
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "tinydep", "1.0", {"tinydep/__init__.py": "", "tinydep/core.py": 'VALUE = "built"\n'})
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("tinydep==1.0\n")
    artifacts = tmp_path / "layer"

    # When the layer is built
    built = build_layer(
        artifacts, python, pip_args=f"--no-index --find-links {wheels}", requirements=requirements
    )
    assert built.returncode == 0, built.stdout + built.stderr

    # Then every module, the package's and the dependency's, has its cpython-312 .pyc beside it
    site = artifacts / "python"
    sources = sorted(site.rglob("*.py"))
    assert any(p.parts[-2:] == ("tinydep", "core.py") for p in sources)
    assert (site / "serverless_openclaw" / "lifecycle.py") in sources
    shared = ROOT / "layers" / "shared"
    package = {p.relative_to(shared) for p in (shared / "serverless_openclaw").rglob("*.py")}
    assert {
        p.relative_to(site) for p in sources if p.relative_to(site).parts[0] == "serverless_openclaw"
    } == package
    missing = [p for p in sources if not (p.parent / "__pycache__" / f"{p.stem}.cpython-312.pyc").is_file()]
    assert not missing, f"no cpython-312 bytecode for {missing[:5]}"
    # And no bytecode of another interpreter came along
    assert not [p for p in site.rglob("*.pyc") if ".cpython-312." not in p.name]
    # And each .pyc is hash-based and never checked against its source
    for source in sources:
        header = (source.parent / "__pycache__" / f"{source.stem}.cpython-312.pyc").read_bytes()[4:8]
        assert int.from_bytes(header, "little") == UNCHECKED_HASH, source

    # When a source changes after the build (as timestamps do when Lambda unpacks the layer)
    core = site / "tinydep" / "core.py"
    core.write_text('VALUE = "recompiled from source"\n')
    imported = subprocess.run(
        [python, "-c", "import tinydep.core; print(tinydep.core.VALUE)"],
        env={"PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1", "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        check=True,
    )

    # Then python3.12 still loads the shipped bytecode: nothing is compiled at import
    assert imported.stdout.strip() == "built"


def test_the_build_refuses_another_python(tmp_path: Path) -> None:
    # Given the test's own interpreter, which is not python3.12
    if sys.version_info[:2] == (3, 12):
        pytest.skip("the tests run on python3.12 here")

    # When the layer is built with it
    built = build_layer(tmp_path / "layer", sys.executable, pip_args="--no-index")

    # Then it stops before installing anything, saying what it needs
    assert built.returncode != 0
    assert "needs python3.12" in built.stdout + built.stderr
    assert not (tmp_path / "layer" / "python").exists()
