"""The bridge image built and run on this machine, without Docker: `python -m local.image build`.

Debian's `buildah` builds `bridge/Dockerfile` daemonless (`--isolation chroot`, `--storage-driver vfs`,
local/buildah.py) and `buildah run` runs the ECS stand-in's tasks inside the result
(local/image_containers.py). No image registry is reachable, so the Dockerfile's two base images (build
arguments NODE_IMAGE and PYTHON_IMAGE) are replaced by stand-ins built here, laid out like the official
ones:

  debian   Debian bookworm (`debootstrap --variant=minbase`) from the mirror apt uses on this machine
  node     + the Node the Dockerfile names, from npm (`node-linux-<arch>`), and npm, in /usr/local
  python   + a shared-library CPython 3.12 build of this machine (pyenv's) in /usr/local, with pip

Everything else is the Dockerfile unchanged. Each image is tagged by a hash of its inputs and kept in a
buildah storage in the user's cache folder (~/.cache/serverless-openclaw/image, or IMAGE_CACHE), outside
the checkout: a second build with nothing changed takes a second, also from a fresh clone, and a
changed input rebuilds what depends on it. Both bases trust this machine's CA bundle (npm's
`cafile`, pip's `cert`): where a TLS-inspecting proxy stands between the machine and the registries, the
npm and pip steps inside the build would fail without it.

The image is built for this machine's architecture; the deploy script builds linux/arm64 for Fargate.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from local.buildah import Buildah, ImageError, cache_folder
from local.image_containers import ensure_container
from local.runtime import node_package

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "bridge" / "Dockerfile"
KEEP_BUILDS = 3
"""Images of earlier inputs kept, per repository (bridge and bases: other checkouts of the repository may be
testing theirs)."""
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
NPM_MAJOR = "11"
"""The npm the stand-in Node base carries (the official node:24 images ship npm 11)."""
NAME_PREFIX = "localhost/serverless-openclaw"
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_CA = "/usr/local/share/serverless-openclaw/host-ca.crt"
"""Where the stand-in bases keep this machine's CA bundle (npm and pip are pointed at it)."""
PYTHON_RUNTIME_PACKAGES = (
    "ca-certificates libbz2-1.0 libexpat1 libffi8 liblzma5 libncursesw6 libreadline8 libsqlite3-0 libssl3 "
    "libuuid1 netbase tzdata zlib1g"
)
"""What the official python:3.12-slim-bookworm image installs for its interpreter's extension modules."""


def digest(*parts: str | bytes) -> str:
    """A short stable hash of the inputs of an image (its tag)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def dockerfile_default(name: str, dockerfile: Path = DOCKERFILE) -> str:
    """The default of one `ARG name=value` of the Dockerfile."""
    found = re.search(rf"^ARG\s+{re.escape(name)}=(\S+)\s*$", dockerfile.read_text(), flags=re.MULTILINE)
    if found is None:
        raise ImageError(f"{dockerfile} declares no `ARG {name}=…` default")
    return found.group(1)


def node_version(dockerfile: Path = DOCKERFILE) -> str:
    """The Node release of the Dockerfile's NODE_IMAGE default (`node:24.21.0-bookworm-slim` → 24.21.0)."""
    image = dockerfile_default("NODE_IMAGE", dockerfile)
    found = re.fullmatch(r"node:(\d+\.\d+\.\d+)(-.*)?", image)
    if found is None:
        raise ImageError(f"NODE_IMAGE={image} does not name a node:X.Y.Z image")
    return found.group(1)


def apt_mirror(roots: Iterable[Path] = (Path("/etc/apt"),)) -> str:
    """The Debian mirror apt uses on this machine (DEBIAN_MIRROR overrides), for debootstrap."""
    configured = os.environ.get("DEBIAN_MIRROR", "").strip()
    if configured:
        return configured
    for root in roots:
        candidates = [root / "sources.list", *sorted((root / "sources.list.d").glob("*.sources"))]
        candidates += sorted((root / "sources.list.d").glob("*.list"))
        for path in candidates:
            if path.is_file():
                mirror = _debian_uri(path.read_text(errors="replace"))
                if mirror:
                    return mirror
    return DEFAULT_MIRROR


def _debian_uri(text: str) -> str | None:
    """The first URI of a sources file that serves Debian's main archive (not security, not a PPA)."""
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 3 and words[0] == "deb" and words[1].rstrip("/").endswith("/debian"):
            return words[1].rstrip("/")
        if len(words) >= 2 and words[0] == "URIs:":
            uri = next((w for w in words[1:] if w.rstrip("/").endswith("/debian")), None)
            if uri:
                return uri.rstrip("/")
    return None


def python312_prefix() -> Path:
    """A shared-library CPython 3.12 build (PYTHON312_PREFIX, else pyenv's); ImageError when none."""
    configured = os.environ.get("PYTHON312_PREFIX", "").strip()
    candidates = [Path(configured)] if configured else []
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(pyenv.glob("3.12*"), reverse=True)
    for prefix in candidates:
        if (prefix / "bin" / "python3.12").is_file() and (prefix / "lib" / "libpython3.12.so.1.0").is_file():
            return prefix
    raise ImageError(
        "the stand-in Python 3.12 base needs a shared-library CPython 3.12 built on Debian 12 (bookworm), "
        "and none was found (PYTHON312_PREFIX, or ~/.pyenv/versions/3.12*). Build one with pyenv: "
        "`PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install 3.12`, or set PYTHON312_PREFIX to one"
    )


def host_ca_bundle() -> bytes:
    """This machine's CA bundle (what its TLS clients trust), for the stand-in bases."""
    for path in (os.environ.get("SSL_CERT_FILE", ""), "/etc/ssl/certs/ca-certificates.crt"):
        if path and Path(path).is_file():
            return Path(path).read_bytes()
    raise ImageError(
        "no CA bundle at /etc/ssl/certs/ca-certificates.crt (Debian: apt-get install ca-certificates)"
    )


def build_context_files(repo: Path = REPO) -> list[Path]:
    """The files of the repository that `.dockerignore` lets into the build context, sorted."""
    rules = _dockerignore_rules(repo / ".dockerignore")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout.decode()
    kept = [name for name in listed.split("\0") if name and _in_context(name, rules)]
    return sorted(repo / name for name in kept if (repo / name).is_file())


def _dockerignore_rules(path: Path) -> list[tuple[bool, str]]:
    """(excluded?, pattern) per line of a .dockerignore, in order (the last matching rule wins)."""
    rules = []
    for raw in path.read_text().splitlines() if path.is_file() else []:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((not negated, line.lstrip("!").strip("/")))
    return rules


def _in_context(name: str, rules: Sequence[tuple[bool, str]]) -> bool:
    parts = name.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for exclude, pattern in rules:
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            excluded = exclude
    return not excluded


def bridge_inputs_digest(repo: Path = REPO, *bases: str) -> str:
    """The hash the bridge image is tagged with: Dockerfile, .dockerignore, context files and the bases."""
    parts: list[str | bytes] = [*bases]
    for path in [repo / "bridge" / "Dockerfile", repo / ".dockerignore", *build_context_files(repo)]:
        parts += [str(path.relative_to(repo)), path.read_bytes() if path.is_file() else b""]
    return digest(*parts)


@dataclass
class ImageBuilder:
    """Builds the stand-in bases and the bridge image, each only when its inputs changed."""

    buildah: Buildah
    say: Callable[[str], None] = print

    @property
    def cache(self) -> Path:
        """The cache folder."""
        return self.buildah.cache

    def bridge(self, context: Path = REPO, repository: str = "bridge") -> str:
        """The bridge image's name, built unless an image of the same inputs is already there (`context`:
        a checkout whose bridge/Dockerfile to build; `repository`: the name's part after the prefix)."""
        started = time.monotonic()
        debian = self.debian_base()
        node = self.node_base(debian)
        python = self.python_base(debian)
        name = f"{NAME_PREFIX}-{repository}:{bridge_inputs_digest(context, debian, node, python)}"
        if self.buildah.has_image(name):
            self.say(f"==> [4/4] bridge image {name} is up to date")
            return name
        self.say(f"==> [4/4] building bridge/Dockerfile as {name} (npm, pip and apt inside: minutes)")
        self.buildah.build(
            context,
            name,
            containerfile=context / DOCKERFILE.relative_to(REPO),
            build_args={"DEBIAN_IMAGE": debian, "NODE_IMAGE": node, "PYTHON_IMAGE": python},
            jobs=2,  # the OpenClaw and Python stages are independent: their downloads overlap
        )
        self.buildah.prune(name.split(":")[0], name, also_keep=KEEP_BUILDS - 1)
        self.say(f"==> bridge image (and any base it needed) built in {time.monotonic() - started:.0f} s")
        return name

    def debian_base(self) -> str:
        """Debian bookworm, minbase, from this machine's apt mirror."""
        mirror = apt_mirror()
        arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=False)
        architecture = arch.stdout.strip() or platform.machine()
        key = digest(SUITE, "minbase", "without apt's caches", SLIM_DPKG, APT_CLEAN, mirror, architecture)
        name = f"{NAME_PREFIX}-debian:{SUITE}-{key}"
        if self.buildah.has_image(name):
            self.say(f"==> [1/4] Debian {SUITE} base {name} is up to date")
            return name
        # The debootstrapped tree is kept as a tarball: a rebuild of the image (a pruned storage) skips it.
        context = self.cache / "debian" / name.rsplit("-", 1)[-1]
        tarball = context / "rootfs.tar"
        if not tarball.is_file():
            self._debootstrap(mirror, self._fresh(context), tarball)
        (context / "Containerfile").write_text(
            f'FROM scratch\nADD rootfs.tar /\nENV PATH={BASE_PATH} LANG=C.UTF-8\nCMD ["bash"]\n'
        )
        self.buildah.build(context, name, containerfile=context / "Containerfile", build_args={})
        self.buildah.prune(name.split(":")[0], name, also_keep=KEEP_BUILDS - 1)
        return name

    def _debootstrap(self, mirror: str, context: Path, tarball: Path) -> None:
        """Debian's minbase from `mirror` into a tarball (owners and modes kept, for ADD)."""
        debootstrap = shutil.which("debootstrap") or shutil.which("/usr/sbin/debootstrap")
        if debootstrap is None:
            raise ImageError(
                "debootstrap is not installed: `make image` installs it (apt-get install debootstrap)"
            )
        rootfs = context / "rootfs"
        self.say(f"==> [1/4] Debian {SUITE} minbase from {mirror} with debootstrap (about 2-3 min, once)")
        done = subprocess.run(
            [debootstrap, "--variant=minbase", SUITE, str(rootfs), mirror],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise ImageError(
                f"debootstrap {SUITE} from {mirror} failed (exit {done.returncode}); it needs root and the "
                f"mirror (set DEBIAN_MIRROR to another):\n{done.stdout[-2000:]}"
            )
        # As Debian's own images: no downloaded packages, no package lists (an image runs apt-get update).
        for cached in [*rootfs.glob("var/cache/apt/archives/*.deb"), *rootfs.glob("var/lib/apt/lists/*_*")]:
            cached.unlink()
        # As the -slim images the Dockerfile's bases are: no documentation, manual pages or translations
        # (dpkg leaves out those of packages installed later too), and apt keeps no downloaded package.
        make_slim(rootfs)
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True)
        partial.rename(tarball)
        shutil.rmtree(rootfs)

    def node_base(self, debian: str) -> str:
        """The Debian base + the Dockerfile's Node (from npm) and npm, as the official node image has them."""
        version = node_version()
        package = node_package()
        ca = host_ca_bundle()
        containerfile = "\n".join(
            [
                f"FROM {debian}",
                f"COPY host-ca.crt {HOST_CA}",
                f"COPY npm/node_modules/{package}/bin/node /usr/local/bin/node",
                "COPY npm/node_modules/npm /usr/local/lib/node_modules/npm",
                "RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\",
                "    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\",
                f"    && mkdir -p /usr/local/etc && echo 'cafile={HOST_CA}' > /usr/local/etc/npmrc \\",
                "    && node --version && npm --version",
                'CMD ["node"]',
                "",
            ]
        )
        key = digest(debian, package, version, NPM_MAJOR, ca, containerfile)
        name = f"{NAME_PREFIX}-node-base:{version}-{key}"
        if self.buildah.has_image(name):
            self.say(f"==> [2/4] Node base {name} is up to date")
            return name
        npm = shutil.which("npm")
        if npm is None:
            raise ImageError(
                "npm is needed to fetch Node for the stand-in base (Debian: apt-get install npm)"
            )
        context = self._fresh(self.cache / "context" / "node")
        self.say(f"==> [2/4] Node base: {package}@{version} and npm@{NPM_MAJOR} from npm")
        (context / "npm").mkdir()
        (context / "npm" / "package.json").write_text('{"name":"node-base","private":true}\n')
        fetched = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--ignore-scripts"]
            + [f"{package}@{version}", f"npm@{NPM_MAJOR}"],
            cwd=context / "npm",
            check=False,
        )
        if fetched.returncode != 0:
            raise ImageError(
                f"`npm install {package}@{version}` failed (exit {fetched.returncode}); see above"
            )
        return self._build_base(context, name, containerfile, ca)

    def python_base(self, debian: str) -> str:
        """The Debian base + this machine's CPython 3.12 in /usr/local, as the official python image."""
        prefix = python312_prefix()
        interpreter = prefix / "bin" / "python3.12"
        version = subprocess.run(
            [str(interpreter), "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if not version:
            raise ImageError(f"{interpreter} does not run; rebuild it or set PYTHON312_PREFIX to another")
        ca = host_ca_bundle()
        containerfile = "\n".join(
            [
                f"FROM {debian}",
                "RUN apt-get update \\",
                f"    && apt-get install -y --no-install-recommends {PYTHON_RUNTIME_PACKAGES} \\",
                "    && rm -rf /var/lib/apt/lists/*",
                f"COPY host-ca.crt {HOST_CA}",
                "COPY python/ /usr/local/",
                "RUN ln -s python3.12 /usr/local/bin/python3 \\",
                "    && ln -s python3.12 /usr/local/bin/python \\",
                "    && printf '#!/bin/sh\\nexec /usr/local/bin/python3.12 -m pip \"$@\"\\n' "
                "> /usr/local/bin/pip \\",
                "    && chmod 755 /usr/local/bin/pip && ln -s pip /usr/local/bin/pip3 \\",
                f"    && printf '[global]\\ncert = {HOST_CA}\\n' > /etc/pip.conf \\",
                "    && ldconfig && python3 -c 'import ssl, sqlite3, ctypes' && pip --version",
                'CMD ["python3"]',
                "",
            ]
        )
        name = (
            f"{NAME_PREFIX}-python-base:{version}-{digest(debian, str(prefix), version, ca, containerfile)}"
        )
        if self.buildah.has_image(name):
            self.say(f"==> [3/4] Python base {name} is up to date")
            return name
        context = self._fresh(self.cache / "context" / "python")
        self.say(f"==> [3/4] Python base: CPython {version} from {prefix}")
        staged = context / "python"
        (staged / "bin").mkdir(parents=True)
        (staged / "lib").mkdir()
        shutil.copy2(interpreter, staged / "bin" / "python3.12")
        shutil.copy2(prefix / "lib" / "libpython3.12.so.1.0", staged / "lib" / "libpython3.12.so.1.0")
        shutil.copytree(
            prefix / "lib" / "python3.12",
            staged / "lib" / "python3.12",
            ignore=_standard_library_only,
            symlinks=True,
        )
        return self._build_base(context, name, containerfile, ca)

    def _build_base(self, context: Path, name: str, containerfile: str, ca: bytes) -> str:
        """Build a stand-in base from its staged context (with this machine's CA bundle), then drop the
        context and the base's earlier tags."""
        (context / "host-ca.crt").write_bytes(ca)
        (context / "Containerfile").write_text(containerfile)
        self.buildah.build(context, name, containerfile=context / "Containerfile", build_args={})
        shutil.rmtree(context)
        self.buildah.prune(name.split(":")[0], name, also_keep=KEEP_BUILDS - 1)
        return name

    @staticmethod
    def _fresh(folder: Path) -> Path:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder


SLIM_DPKG = """path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""
"""What Debian's -slim images tell dpkg to leave out (their /etc/dpkg/dpkg.cfg.d/docker)."""
_APT_CLEAN_COMMAND = (
    '"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"'
)
APT_CLEAN = (
    f"DPkg::Post-Invoke {{ {_APT_CLEAN_COMMAND}; }};\n"
    f"APT::Update::Post-Invoke {{ {_APT_CLEAN_COMMAND}; }};\n"
    'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
)
"""Debian's images' /etc/apt/apt.conf.d/docker-clean: apt keeps no package it downloaded."""


def make_slim(rootfs: Path) -> None:
    """Make a debootstrapped tree like Debian's -slim image: its dpkg and apt settings, and without the
    files those settings leave out of every package installed later."""
    (rootfs / "etc" / "dpkg" / "dpkg.cfg.d" / "docker").write_text(SLIM_DPKG)
    (rootfs / "etc" / "apt" / "apt.conf.d" / "docker-clean").write_text(APT_CLEAN)
    share = rootfs / "usr" / "share"
    left_out = [
        entry
        for folder in ("man", "groff", "info", "lintian", "linda")
        for entry in (share / folder).glob("*")
    ]
    left_out += [entry for entry in (share / "locale").glob("*") if entry.name != "locale.alias"]
    left_out += [entry for entry in (share / "doc").glob("*/*") if entry.name != "copyright"]
    for entry in left_out:
        if entry.parent.is_symlink():
            continue  # a package's doc folder linking to another's: emptied there
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink(missing_ok=True)


def _standard_library_only(directory: str, names: list[str]) -> set[str]:
    """What the official image leaves out of lib/python3.12: the test suites, bytecode, the static library,
    and every installed package but pip (a developer's own packages are not the image's)."""
    skipped = {name for name in names if name in ("test", "idle_test", "__pycache__") or name.endswith(".a")}
    if Path(directory).name == "site-packages":
        skipped |= {
            name for name in names if name != "pip" and not re.fullmatch(r"pip-[\d.]+\.dist-info", name)
        }
    return skipped


def ensure_image(cache: Path | None = None, *, say: Callable[[str], None] = print) -> str:
    """The bridge image's name, building what is missing (bases included), and its run container."""
    folder = cache or cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    buildah = Buildah(folder)
    image = ImageBuilder(buildah, say=say).bridge()
    ensure_container(buildah, image, say)
    return image


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m local.image build`: build the bridge image (and its stand-in bases) unless up to date."""
    top = argparse.ArgumentParser(prog="python -m local.image", description=__doc__.split("\n\n")[0])
    top.add_argument("command", choices=("build",))
    top.parse_args(argv)
    try:
        name = ensure_image()
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
