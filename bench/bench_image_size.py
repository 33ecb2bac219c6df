"""The bridge image's size, layer by layer, before and after (the Dockerfile of BENCH_IMAGE_BEFORE, main by
default, against this checkout's), what a bridge-only change re-pushes, and the pull on Fargate on paper.

1. The OpenClaw tree (/opt/openclaw) before and after bridge/openclaw/trim.sh, from the local install of the
   same lockfile (hard links, local/image_tree.py), `du -sb` and `tar | gzip -6`.
2. Both images built with buildah on the same stand-in bases (local/image.py; one layer per instruction, as
   Docker builds them), each layer's size uncompressed and gzip-compressed (pushed to an OCI layout on disk
   as a registry would receive it), the totals and the ratio.
3. With BENCH_IMAGE_BRIDGE_CHANGE=1 (about 7 GB more disk), this checkout's build context again with one
   bridge module changed: which layers' digests change (only those are pushed again).
4. Pull + provisioning on Fargate for both images, and with a SOCI index, from the published figures in
   docs/cold-start.md (a paper estimate: nothing here reaches AWS).

Steps 2-4 need buildah and root (`make image-tools`); the first run builds both images (minutes, npm, pip and
apt inside), later runs reuse them. Prints figures; never fails on size.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local.buildah import Buildah, ImageError, buildah_available, cache_folder  # noqa: E402
from local.image import ImageBuilder, build_context_files  # noqa: E402
from local.image_tree import ImageTreeError, TreeSize, copy_installed, measure, trim  # noqa: E402
from local.runtime import runtime  # noqa: E402

MB = 1_000_000
BEFORE = os.environ.get("BENCH_IMAGE_BEFORE", "main")
BRIDGE_CHANGE = os.environ.get("BENCH_IMAGE_BRIDGE_CHANGE") == "1"
"""Build step 3 too (vfs keeps a whole copy of the tree per instruction: about 7 GB more disk)."""
MIN_FREE_DISK = 20_000_000_000
"""Free disk the image builds need in the image cache (vfs keeps a whole copy of the tree per layer)."""
CHANGED_MODULE = Path("bridge") / "bridge" / "__init__.py"
"""The bridge module a bridge-only change touches (a comment appended)."""

# The paper estimate (docs/cold-start.md, "Pull and provisioning on Fargate", has the sources). Two observed
# Fargate cold starts, each from task creation to the container running, against the image's size as
# `docker images` shows it (uncompressed):
OBSERVED = ((413.0, 57.0), (1030.0, 68.5))
"""(image MB, seconds): a 413 MB PHP image, mean of 10 starts (elasticscale.com, April 2024); this stack's
~1 GB bridge image (issue 15: 68.5 s measured on earlier systems)."""
SOCI_MIN_LAYER = 10 * 1024 * 1024
"""Layers smaller than this (compressed) get no zTOC: SOCI pulls them whole (soci's default, which Fargate
documents)."""
SOCI_READ_AT_START = (0.064, 0.30)
"""Share of an indexed layer read before the container does useful work: 6.4 % on average (the study AWS's
SOCI launch post cites) to 30 % (assumed for a Node app that loads much of its bundle at boot)."""


@dataclass(frozen=True)
class Layer:
    """One layer of an image: what made it, its digest (uncompressed) and sizes."""

    created_by: str
    diff_id: str
    size: int
    gzip_size: int


def _mb(size: float) -> str:
    return f"{size / MB:8.1f} MB"


# --- 1. the OpenClaw tree -------------------------------------------------------------------------------


def _row(label: str, size: TreeSize) -> str:
    return f"  {label:<26} {size.bytes / MB:8.1f} MB on disk {size.gzip_bytes / MB:8.1f} MB gzip -6"


def tree_sizes() -> None:
    """The OpenClaw tree before and after trim.sh."""
    rt = runtime()
    print(f"OpenClaw {rt.version} from {rt.root} (npm ci of bridge/openclaw/package-lock.json)")
    with tempfile.TemporaryDirectory(prefix="image-tree-") as scratch:
        before = measure(copy_installed(rt, Path(scratch) / "full"))
        print(_row("/opt/openclaw as npm ci", before), flush=True)
        small = copy_installed(rt, Path(scratch) / "trimmed")
        started = time.perf_counter()
        trim(small)
        took = time.perf_counter() - started
        after = measure(small)
    print(_row("after trim.sh", after))
    print(_row("saved", TreeSize(before.bytes - after.bytes, before.gzip_bytes - after.gzip_bytes)))
    print(
        f"  ratio after/before: {after.bytes / before.bytes:.2f} on disk, "
        f"{after.gzip_bytes / before.gzip_bytes:.2f} compressed; trim.sh took {took:.1f} s"
    )


# --- 2. the images, layer by layer ----------------------------------------------------------------------


def export_context(destination: Path, *, ref: str | None = None, changed: bool = False) -> Path:
    """A build context as a small git checkout: the files of `ref` (git archive), else this checkout's
    context files; with `changed`, one bridge module edited (a comment appended)."""
    destination.mkdir(parents=True)
    if ref is not None:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", ref, "bridge", "layers/shared", ".dockerignore"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(destination)], input=archive, check=True)
    else:
        for path in [ROOT / ".dockerignore", ROOT / "bridge" / "Dockerfile", *build_context_files(ROOT)]:
            target = destination / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    if changed:
        with (destination / CHANGED_MODULE).open("a") as module:
            module.write("# a bridge-only change (bench/bench_image_size.py)\n")
    # local/image.py lists the context with git (what .dockerignore lets in, as Docker would send it).
    for command in (["git", "init", "-q"], ["git", "add", "-A"]):
        subprocess.run(command, cwd=destination, check=True, capture_output=True)
    return destination


def layers(buildah: Buildah, image: str, work: Path) -> list[Layer]:
    """The image's layers, bottom first: history, diff ID, uncompressed size and gzip size (the image pushed
    to an OCI layout with gzip, as `docker push` compresses it)."""
    stored = json.loads(buildah.run("inspect", "--type", "image", image, quiet=True))
    config = json.loads(stored["Config"])
    plain = [int(layer["size"]) for layer in json.loads(stored["Manifest"])["layers"]]
    made = [entry.get("created_by", "") for entry in config["history"] if not entry.get("empty_layer")]
    layout = work / re.sub(r"\W", "-", image)
    gzip = ["--disable-compression=false", "--compression-format", "gzip"]
    buildah.run("push", "--quiet", *gzip, image, f"oci:{layout}", quiet=True)
    index = json.loads((layout / "index.json").read_text())
    manifest = _blob(layout, index["manifests"][0]["digest"])
    packed = [int(layer["size"]) for layer in json.loads(manifest)["layers"]]
    shutil.rmtree(layout)
    diff_ids = config["rootfs"]["diff_ids"]
    return [
        Layer(_label(made[n] if n < len(made) else "?"), diff_ids[n], plain[n], packed[n])
        for n in range(len(diff_ids))
    ]


def _blob(layout: Path, digest: str) -> str:
    algorithm, _, value = digest.partition(":")
    return (layout / "blobs" / algorithm / value).read_text()


def _label(created_by: str) -> str:
    """A short name for what made a layer (`COPY … in /opt/openclaw` → `COPY /opt/openclaw`)."""
    text = re.sub(r"^/bin/sh -c (#\(nop\) )?", "", created_by).strip()
    copied = re.match(r"(COPY|ADD) \S+ in (\S+)", text)
    if copied:
        return f"{copied.group(1)} {copied.group(2)}"
    return ("RUN " + text if not text.startswith(("COPY", "ADD")) else text)[:60]


def print_layers(title: str, image: str, found: list[Layer]) -> None:
    """One image's table."""
    print(f"  {title}: {image} ({len(found)} layers)")
    print(f"    {'layer':<62} {'uncompressed':>14} {'gzip':>11}")
    for layer in found:
        print(f"    {layer.created_by:<62} {_mb(layer.size):>14} {_mb(layer.gzip_size):>11}")
    total, packed = sum(layer.size for layer in found), sum(layer.gzip_size for layer in found)
    print(f"    {'total':<62} {_mb(total):>14} {_mb(packed):>11}", flush=True)


def compare(before: list[Layer], after: list[Layer]) -> None:
    """Totals before and after, and the ratio."""
    for what, measure_of in (("uncompressed", "size"), ("gzip (what is pulled)", "gzip_size")):
        old = sum(getattr(layer, measure_of) for layer in before)
        new = sum(getattr(layer, measure_of) for layer in after)
        print(f"  {what:<22} before {_mb(old)}   after {_mb(new)}   ratio after/before {new / old:.2f}")


def bridge_change(after: list[Layer], changed: list[Layer]) -> None:
    """Which layers a bridge-only change makes new."""
    kept = {layer.diff_id for layer in after}
    new = [layer for layer in changed if layer.diff_id not in kept]
    print(f"  a change to {CHANGED_MODULE} alone: {len(new)} of {len(changed)} layers change")
    for layer in new:
        print(f"    {layer.created_by:<62} {_mb(layer.gzip_size):>11} gzip to push and pull again")
    unchanged = sum(layer.gzip_size for layer in changed if layer not in new)
    print(f"    {'the other layers':<62} {_mb(unchanged):>11} unchanged")


# --- 4. pull and provisioning on Fargate, on paper -------------------------------------------------------


def fit() -> tuple[float, float]:
    """(seconds besides the pull, uncompressed MB pulled per second) through the two observations."""
    (size_a, time_a), (size_b, time_b) = OBSERVED
    rate = (size_b - size_a) / (time_b - time_a)
    return time_a - size_a / rate, rate


def estimate(label: str, found: list[Layer]) -> None:
    """Pull + provisioning of one image: whole, and lazily loaded with a SOCI index."""
    fixed, rate = fit()
    size = sum(layer.size for layer in found) / MB
    whole = [layer for layer in found if layer.gzip_size < SOCI_MIN_LAYER]
    indexed = [layer for layer in found if layer.gzip_size >= SOCI_MIN_LAYER]
    print(f"  {label:<7} {size:7.0f} MB: {fixed + size / rate:5.1f} s without SOCI", end="")
    for share in SOCI_READ_AT_START:
        read = (sum(x.size for x in whole) + share * sum(x.size for x in indexed)) / MB
        print(f", {fixed + read / rate:5.1f} s with SOCI if {share:.0%} is read at start", end="")
    print()


def images() -> None:
    """Steps 2-4."""
    buildah = Buildah(cache_folder())
    builder = ImageBuilder(buildah, say=lambda line: print(f"  {line}", flush=True))
    with tempfile.TemporaryDirectory(prefix="bench-image-size-", dir=cache_folder()) as tmp:
        work = Path(tmp)
        old = builder.bridge(export_context(work / "before", ref=BEFORE), f"bridge-{BEFORE}")
        new = builder.bridge()
        print(
            "\nlayers (stand-in bases: the Debian, Node and Python layers are close to, not equal to, the "
            "official images')"
        )
        before, after = layers(buildah, old, work), layers(buildah, new, work)
        print_layers(f"before ({BEFORE})", old, before)
        print_layers("after (this checkout)", new, after)
        compare(before, after)
        if BRIDGE_CHANGE:
            edited = builder.bridge(export_context(work / "changed", changed=True), "bridge-changed")
            print("\na bridge-only change")
            bridge_change(after, layers(buildah, edited, work))
    fixed, rate = fit()
    print(
        f"\npull + provisioning on Fargate, on paper (docs/cold-start.md): {fixed:.0f} s besides the pull, "
        f"{rate:.0f} MB/s of uncompressed image (fitted through {len(OBSERVED)} observed cold starts)"
    )
    estimate("before", before)
    estimate("after", after)


def main() -> int:
    """Print the figures."""
    try:
        tree_sizes()
    except ImageTreeError as exc:
        print(f"  the OpenClaw tree: {exc}")
    if not buildah_available() or os.geteuid() != 0:
        print("\nthe images need buildah and root: `sudo make image-tools`, then run this again as root")
        return 0
    cache_folder().mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache_folder()).free
    if free < MIN_FREE_DISK:
        print(
            f"\nthe image builds need {MIN_FREE_DISK / 1e9:.0f} GB free in {cache_folder()}, "
            f"which has {free / 1e9:.0f} GB"
        )
        return 0
    try:
        images()
    except (ImageError, subprocess.CalledProcessError) as exc:
        print(f"  cannot build or measure the images: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
