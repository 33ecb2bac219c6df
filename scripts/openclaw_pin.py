"""Move the repository to another OpenClaw release: the lockfile re-resolved by npm, and every pin with it.

    make openclaw-pin OPENCLAW_VERSION=2026.10.2    # then make test, commit, make deploy
    python scripts/openclaw_pin.py 2026.10.2

The image installs OpenClaw with `npm ci` of `bridge/openclaw/package-lock.json` and refuses to build when
that lock does not hold the version asked for, so an upgrade is a change to the repository, not a build
argument: npm resolves `openclaw@VERSION` into a copy of `bridge/openclaw/` (the lockfile only, nothing is
installed, no install script runs), the new lock is checked to hold that version, and then the project
files, the template's `OpenClawVersion` default, the Makefile's `OPENCLAW_VERSION` and the Dockerfile's
`ARG OPENCLAW_VERSION` are all rewritten together — or none of them is. `make deploy OPENCLAW_VERSION=…`
runs this first. npm runs on the local runtime's Node 24 (`make openclaw` installs it; this does when it is
missing). Exit codes: 0 done, 1 npm failed or resolved something else, 2 usage.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from local.runtime import ensure_runtime, runtime  # noqa: E402
from local.template import load_template  # noqa: E402
from scripts.aws_errors import Failure, UsageError, exit_code  # noqa: E402
from scripts.commands import Command, CommandRunner, Runner  # noqa: E402

PROJECT = Path("bridge") / "openclaw"
PACKAGE = PROJECT / "package.json"
LOCK = PROJECT / "package-lock.json"
TEMPLATE = Path("template.yaml")
MAKEFILE = Path("Makefile")
DOCKERFILE = Path("bridge") / "Dockerfile"
PINS: dict[Path, re.Pattern[str]] = {
    TEMPLATE: re.compile(r'^(  OpenClawVersion:\n(?:    .*\n)*?    Default: ")([^"\n]+)(")$', re.MULTILINE),
    MAKEFILE: re.compile(r"^(OPENCLAW_VERSION := )(\S+)()$", re.MULTILINE),
    DOCKERFILE: re.compile(r"^(ARG OPENCLAW_VERSION=)(\S+)()$", re.MULTILINE),
}
"""The other files that name the version (tests/template/test_openclaw_lock.py checks they agree): the
second group of each pattern is the version."""


@dataclass(frozen=True)
class Pinned:
    """What a pin did: the version the repository pins now, and the tracked files it rewrote."""

    version: str
    changed: list[str]


def locked_version(root: Path = _REPO) -> str:
    """The OpenClaw version the committed lockfile resolved."""
    try:
        lock = json.loads((root / LOCK).read_text(encoding="utf-8"))
        return str(lock["packages"]["node_modules/openclaw"]["version"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(
            f"{LOCK} does not lock openclaw ({type(exc).__name__}): restore it from git"
        ) from None


def check_version(version: str, root: Path = _REPO) -> None:
    """UsageError unless `version` is what the template's OpenClawVersion parameter accepts."""
    parameter = load_template(root / TEMPLATE)["Parameters"]["OpenClawVersion"]
    if not re.fullmatch(str(parameter["AllowedPattern"]), version):
        raise UsageError(f"{version!r} is not an OpenClaw release version such as 2026.9.6")


def local_node(out: TextIO) -> Path:
    """The local runtime's Node 24 binary (`make openclaw`'s), installed first when it is missing."""
    node = runtime().node
    if not node.exists():
        node = ensure_runtime(say=lambda line: print(line, file=out, flush=True)).node
    return node


def npm_command(npm: str, project: Path, version: str) -> list[str]:
    """npm resolving `openclaw@version` into the project's lockfile: nothing installed, no script run."""
    return [
        npm,
        "install",
        "--prefix",
        str(project),
        "--package-lock-only",
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
        "--save-exact",
        "--lockfile-version=3",
        f"openclaw@{version}",
    ]


def pin(
    version: str,
    runner: Runner,
    out: TextIO,
    *,
    root: Path = _REPO,
    node: Callable[[TextIO], Path] = local_node,
    env: Mapping[str, str] = os.environ,
) -> Pinned:
    """Pin the repository to OpenClaw `version`: lockfile, template, Makefile and Dockerfile, or none."""
    check_version(version, root)
    current = locked_version(root)
    if current == version:
        print(f"  OpenClaw {version} is pinned already: no file changed", file=out)
        return Pinned(version, [])
    npm = runner.which("npm")
    if npm is None:
        raise UsageError(
            "npm is needed to resolve a new OpenClaw lockfile: install it (Debian/Ubuntu: sudo apt-get "
            "install npm; macOS: brew install node) and run the command again"
        )
    node_dir = node(out).parent
    rewritten = _pinned_texts(root, current, version)
    with tempfile.TemporaryDirectory(prefix="openclaw-pin-") as workdir:
        project = Path(workdir)
        for path in (PACKAGE, LOCK):
            (project / path.name).write_bytes((root / path).read_bytes())
        print(
            f"==> resolving openclaw@{version} with npm (was {current}; lockfile only, nothing installed)",
            file=out,
            flush=True,
        )
        search_path = f"{node_dir}{os.pathsep}{env.get('PATH', '')}"
        done = runner.run(Command(npm_command(npm, project, version), env={"PATH": search_path}))
        if done.code != 0:
            raise Failure(
                f"npm could not resolve openclaw@{version} (exit {done.code}): is it a published release, "
                "and is the registry reachable? See npm's output above; no file was changed"
            )
        for path in (PACKAGE, LOCK):
            rewritten[path] = (project / path.name).read_text(encoding="utf-8")
    _check_resolution(rewritten, version)
    _replace_all(root, rewritten)
    changed = [str(path) for path in sorted(rewritten)]
    print(f"  pinned OpenClaw {version} (was {current}) in {', '.join(changed)}", file=out)
    return Pinned(version, changed)


def _pinned_texts(root: Path, current: str, version: str) -> dict[Path, str]:
    """The template, Makefile and Dockerfile with `version` in place of `current`; Failure if one moved."""
    texts: dict[Path, str] = {}
    for path, pattern in PINS.items():
        text = (root / path).read_text(encoding="utf-8")
        found = [match.group(2) for match in pattern.finditer(text)]
        if found != [current]:
            raise Failure(
                f"{path} should pin OpenClaw {current} once, as the lockfile does (found {found or 'none'}): "
                "make them agree (make test says where), then run this again; no file was changed"
            )
        texts[path] = pattern.sub(lambda match: f"{match.group(1)}{version}{match.group(3)}", text)
    return texts


def _check_resolution(texts: Mapping[Path, str], version: str) -> None:
    """Failure unless npm's project asks for exactly `version` and its lock resolved exactly that."""
    try:
        package = json.loads(texts[PACKAGE])
        lock = json.loads(texts[LOCK])
        asked = package["dependencies"]
        locked = lock["packages"]["node_modules/openclaw"]["version"]
        root_asks = lock["packages"][""]["dependencies"]
    except (ValueError, KeyError, TypeError) as exc:
        raise Failure(
            f"npm wrote a lockfile without openclaw ({type(exc).__name__}): no file was changed"
        ) from None
    if asked != {"openclaw": version} or root_asks != asked or locked != version:
        raise Failure(
            f"npm resolved openclaw {locked} for {asked}, not exactly {version}: no file was changed"
        )


def _replace_all(root: Path, texts: Mapping[Path, str]) -> None:
    """Write every file or none: each goes to a temporary beside it first, then all are renamed in turn."""
    originals = {path: (root / path).read_bytes() for path in texts}
    staged = {path: (root / path).with_name(f".{path.name}.pin") for path in texts}
    done: list[Path] = []
    where = Path()
    try:
        for where, text in texts.items():
            staged[where].write_text(text, encoding="utf-8")
        for where in texts:
            os.replace(staged[where], root / where)
            done.append(where)
    except OSError as exc:
        for path in done:  # put back what was already renamed
            (root / path).write_bytes(originals[path])
        raise Failure(f"could not rewrite {where} ({exc.strerror or exc}): no file was changed") from None
    finally:
        for temporary in staged.values():
            temporary.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """`python scripts/openclaw_pin.py VERSION`: pin the repository to that OpenClaw release."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 0 if args and args[0] in ("-h", "--help") else 2

    def run() -> None:
        pinned = pin(args[0], CommandRunner(_REPO, sys.stdout), sys.stdout)
        if pinned.changed:
            print(f"next: make test, then commit {' '.join(pinned.changed)}; make deploy ships it")

    return exit_code(run)


if __name__ == "__main__":
    raise SystemExit(main())
