"""buildah over one storage folder in the user's cache: how this machine builds and runs the bridge image
without Docker or a daemon (local/image.py builds it, local/image_containers.py runs tasks inside it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


class ImageError(Exception):
    """The image cannot be built or run; the message says what to do."""


def cache_folder() -> Path:
    """Where buildah's storage and the build contexts live: IMAGE_CACHE, else the user's cache folder
    (outside the checkout, so a fresh clone, CI's, finds the bases and images already built)."""
    configured = os.environ.get("IMAGE_CACHE", "").strip()
    if configured:
        return Path(configured).resolve()
    user_cache = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(user_cache) / "serverless-openclaw" / "image"


def buildah_available() -> bool:
    """Whether `buildah` is on PATH."""
    return shutil.which("buildah") is not None


@dataclass(frozen=True)
class Buildah:
    """buildah over one storage folder (vfs driver, chroot isolation: no daemon, no fuse, no overlay)."""

    cache: Path

    def argv(self, *args: str) -> list[str]:
        """A buildah command line using this storage."""
        return [
            "buildah",
            "--root",
            str(self.cache / "storage"),
            "--runroot",
            str(self.cache / "run"),
            "--storage-driver",
            "vfs",
            *args,
        ]

    def run(self, *args: str, quiet: bool = False) -> str:
        """Run buildah: with `quiet` its output is returned, else shown as it comes; ImageError on failure."""
        if not buildah_available():
            raise ImageError(
                "buildah is not installed: `make image` installs it "
                "(Debian: apt-get install buildah debootstrap)"
            )
        if quiet:
            done = subprocess.run(self.argv(*args), capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise ImageError(
                    f"`buildah {args[0]}` failed (exit {done.returncode}): {done.stderr[-1500:]}"
                )
            return done.stdout
        # The build's own progress (each step, npm and pip) goes to the terminal as it happens.
        streamed = subprocess.run(self.argv(*args), check=False)
        if streamed.returncode != 0:
            raise ImageError(f"`buildah {args[0]}` failed (exit {streamed.returncode}); its output is above")
        return ""

    def has_image(self, name: str) -> bool:
        """Whether the storage holds an image of this name."""
        if not buildah_available():
            return False
        done = subprocess.run(
            self.argv("inspect", "--type", "image", "--format", "{{.FromImageID}}", name),
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def build(
        self, context: Path, tag: str, *, containerfile: Path, build_args: dict[str, str], jobs: int = 1
    ) -> None:
        """`buildah bud` one Containerfile (no registry: every FROM is a local image or scratch)."""
        args = [
            "bud",
            f"--jobs={jobs}",
            "--isolation",
            "chroot",
            "--format",
            "docker",
            "--pull=never",
            # One layer per instruction, as Docker builds it for the deploy (not one per stage), and each
            # kept as a cache: a bridge change rebuilds only the layers after the bridge's COPY.
            "--layers",
        ]
        for name, value in build_args.items():
            args += ["--build-arg", f"{name}={value}"]
        self.run(*args, "-f", str(containerfile), "-t", tag, str(context))

    def prune(self, repository: str, keep: str, *, also_keep: int = 0) -> None:
        """Remove the other tags of one repository (earlier builds whose inputs changed), and their run
        containers, but the `also_keep` newest of them."""
        listed = self.run("images", "--format", "{{.Name}}:{{.Tag}}", quiet=True)
        # `buildah images` lists the newest first.
        others = [name for name in listed.split() if name.startswith(repository + ":") and name != keep]
        stale = others[also_keep:]
        if stale:
            containers = [run_container(name) for name in stale]
            subprocess.run(self.argv("rm", *containers), capture_output=True, check=False)
            subprocess.run(self.argv("rmi", *stale), capture_output=True, check=False)


def run_container(image: str) -> str:
    """The buildah container every task of one image runs in (see ImageContainers)."""
    return f"serverless-openclaw-run-{image.rsplit(':', 1)[-1]}"
