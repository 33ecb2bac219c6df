"""The bridge image can only be built elsewhere (no Docker engine here): pin what it must agree with."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "bridge" / "Dockerfile").read_text()


def _makefile_var(name: str) -> str:
    match = re.search(rf"^{name} := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, f"Makefile has no {name}"
    return match.group(1)


def test_openclaw_version_is_the_same_everywhere() -> None:
    # Given the version the image installs, the one the tests run against, and the stack's parameter
    image = re.search(r"^ARG OPENCLAW_VERSION=(\S+)$", DOCKERFILE, re.MULTILINE)
    parameter = load_template()["Parameters"]["OpenClawVersion"]["Default"]
    # Then they agree: what CI tests is what ships
    assert image and image.group(1) == _makefile_var("OPENCLAW_VERSION") == parameter


def test_node_is_new_enough_for_openclaw() -> None:
    # OpenClaw needs node:sqlite: Node >= 24.16 (or >= 26.1)
    match = re.search(r"ARG NODE_IMAGE=node:(\d+)\.(\d+)\.\d+", DOCKERFILE)
    assert match
    major, minor = int(match.group(1)), int(match.group(2))
    assert (major == 24 and minor >= 16) or (major >= 26 and (major, minor) >= (26, 1))


def test_every_copied_path_exists() -> None:
    for source in re.findall(r"^COPY (?!--from)(\S+) ", DOCKERFILE, re.MULTILINE):
        assert (ROOT / source).exists(), f"COPY {source}: missing"


def _stages() -> dict[str, list[str]]:
    """Each stage's instructions (continued lines joined), by its `AS` name; the final stage as ""."""
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in re.sub(r"\\\n\s*", " ", DOCKERFILE).splitlines():
        instruction = line.strip()
        if instruction.startswith("FROM "):
            named = re.search(r"\sAS\s+(\S+)$", instruction)
            current = stages.setdefault(named.group(1) if named else "", [])
        elif instruction and not instruction.startswith("#"):
            current.append(instruction)
    return stages


def test_every_bridge_module_is_in_the_image_and_byte_compiled() -> None:
    # Given the bridge's modules, subpackages included (state_sync is one)
    package = ROOT / "bridge" / "bridge"
    modules = [f"/app/bridge/{path.relative_to(package).as_posix()}" for path in package.rglob("*.py")]
    assert "/app/bridge/state_sync/backup.py" in modules
    # Then the build context and the image take the package folder whole, compiled in the app stage
    assert "!bridge/bridge/" in (ROOT / ".dockerignore").read_text().splitlines()
    app = _stages()["app"]
    assert "COPY bridge/bridge /app/bridge" in app
    assert "COPY --from=app /app/bridge /app/bridge" in _stages()[""]
    # And compileall walks /app/bridge (after its COPY) to any depth, its exclusion skipping none of them
    compiled = [shlex.split(line.split("compileall", 1)[1]) for line in app if "compileall" in line]
    after_copy = app[app.index("COPY bridge/bridge /app/bridge") + 1]
    assert "compileall" in after_copy and "/app/bridge" in shlex.split(after_copy)
    for args in compiled:
        assert "-l" not in args
        excluded = args[args.index("-x") + 1] if "-x" in args else None
        assert not excluded or not [m for m in modules if re.search(excluded, m)]


def test_the_layers_go_from_the_least_to_the_most_often_changed() -> None:
    # Given the final image's instructions that make a layer (its base stage's, then its own)
    stages = _stages()
    final = [line for line in stages["base"] + stages[""] if line.split()[0] in ("COPY", "ADD", "RUN")]
    parts = [
        ("Node", "COPY --from=openclaw /usr/local/bin/node "),
        ("Python", "COPY --from=python /runtime/ /"),
        ("OS packages and the user", "RUN apt-get update"),
        ("OpenClaw", "COPY --from=openclaw /opt/openclaw "),
        ("OpenClaw's compile cache", "COPY --from=prepared /opt/openclaw/compile-cache "),
        ("Python dependencies", "COPY --from=python /deps/ /"),
        ("shared package", "COPY --from=app /app/serverless_openclaw "),
        ("bridge", "COPY --from=app /app/bridge "),
    ]

    # Then each part is a layer of its own, in this order, the bridge last: a bridge change re-pushes (and
    # a task re-pulls) one small layer, and a Python dependency change neither re-pulls OpenClaw
    positions = {}
    for part, start in parts:
        found = [n for n, line in enumerate(final) if line.startswith(start)]
        assert len(found) == 1, f"{part}: {len(found)} layers start with {start!r}"
        positions[part] = found[0]
    assert list(positions.values()) == sorted(positions.values())
    assert positions["bridge"] == len(final) - 1
    # and the compile cache is prepared in a stage of its own from the same OpenClaw tree
    prepared = stages["prepared"]
    assert "COPY --from=openclaw /opt/openclaw /opt/openclaw" in prepared
    assert any("bridge.compile_cache /opt/openclaw/compile-cache" in line for line in prepared)
    # and the shared package's bytecode is made before the bridge is copied (a bridge change keeps it)
    app = _stages()["app"]
    shared = app.index("COPY layers/shared/serverless_openclaw /app/serverless_openclaw")
    assert shared < app.index("COPY bridge/bridge /app/bridge")
    assert "/app/serverless_openclaw" in app[shared + 1] and "compileall" in app[shared + 1]


def test_the_final_stage_sets_only_the_user_the_runtimes_settings_come_from_the_base() -> None:
    # Given the final stage's and the base stage's instructions
    stages = _stages()
    settings = ("ENV ", "WORKDIR ", "HEALTHCHECK ", "ENTRYPOINT ", "CMD ", "LABEL ")

    # Then the final stage only copies and names the user: each further instruction there would copy the
    # whole image once more at every `make image` (buildah --layers on vfs), where in the base it copies
    # the base's smaller tree
    assert [line.split()[0] for line in stages[""] if not line.startswith("COPY ")] == ["USER"]
    assert {word.strip() for line in stages["base"] for word in settings if line.startswith(word)} == {
        "ENV",
        "WORKDIR",
        "HEALTHCHECK",
        "ENTRYPOINT",
    }
    # and the preparation, which writes under /opt/openclaw, still runs as root
    assert not [line for line in stages["base"] + stages["prepared"] if line.startswith("USER ")]


def test_the_runtime_has_only_the_node_binary_and_no_pip() -> None:
    # Given the final stage's base and what it copies from the Node image
    final = _stages()["base"]
    bases = {name: image for image, name in re.findall(r"^FROM (\S+)(?:\s+AS\s+(\S+))?$", DOCKERFILE, re.M)}

    # Then the runtime starts from Debian (no npm, npx, corepack or yarn of the Node image) and takes node
    assert bases[""] == "base" and bases["base"] == "${DEBIAN_IMAGE}"
    assert re.search(r"^ARG DEBIAN_IMAGE=debian:bookworm-slim$", DOCKERFILE, re.MULTILINE)
    assert "COPY --from=openclaw /usr/local/bin/node /usr/local/bin/node" in final
    # and the Python it copies has no pip (nothing installs at run time)
    python = " ".join(_stages()["python"])
    assert "site-packages/*" in python and "ensurepip" in python


def test_runs_as_the_task_definitions_non_root_user_with_exec_form_entrypoint() -> None:
    container = load_template()["Resources"]["BridgeTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    user = re.findall(r"^USER (\S+)$", DOCKERFILE, re.MULTILINE)
    assert user and user[-1].split(":")[0] == str(container["User"]) != "0"
    assert re.search(r'^ENTRYPOINT \["python3", "-m", "bridge"\]$', DOCKERFILE, re.MULTILINE)
    assert (ROOT / "bridge" / "bridge" / "__main__.py").exists()
    # The health checks (image and task definition) run a module that exists
    assert "bridge.healthcheck" in DOCKERFILE and "bridge.healthcheck" in container["HealthCheck"]["Command"]
    assert (ROOT / "bridge" / "bridge" / "healthcheck.py").exists()


def test_the_bridge_imports_no_type_stubs() -> None:
    # Given every module of the bridge imported in a fresh interpreter, as the image's Python would
    package = ROOT / "bridge" / "bridge"
    modules = sorted(
        "bridge." + ".".join(path.relative_to(package).with_suffix("").parts)
        for path in package.rglob("*.py")
        if path.name != "__init__.py"
    )
    probe = f"import importlib, json, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
    probe += "print(json.dumps(sorted(sys.modules)))"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "bridge"), str(ROOT / "layers" / "shared")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=ROOT, check=True, capture_output=True, text=True
    )
    loaded = json.loads(out.stdout.splitlines()[-1])

    # Then no boto3 type stub came with them: they are a dev dependency, not in bridge/requirements.txt
    assert "bridge.app" in loaded and "bridge.state_sync.store" in loaded
    assert [m for m in loaded if m.startswith("mypy_boto3_")] == []
