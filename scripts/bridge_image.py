"""The bridge image on AWS: its ECR repository, its tag (a hash of what it is built from), build and push.

The repository is declared in `deploy/images.yaml`, a small stack of its own (`<stack>-images`) created
before the main stack: the main stack's task definition names the image, so the image must exist first.
An image is tagged with a hash of its build context — the Dockerfile, every file it COPYs and the build
arguments — so an unchanged bridge is found in ECR and neither rebuilt nor pushed, and the stack is given
the image by digest, so it runs exactly the bytes that were pushed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shlex
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from scripts.aws_errors import Failure, UsageError, aws_errors, redact
from scripts.commands import Command, Runner
from scripts.stack_events import describe_stack, stack_failure, wait_until_settled

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient

REPOSITORY = Path(__file__).resolve().parent.parent
DOCKERFILE = REPOSITORY / "bridge" / "Dockerfile"
IMAGES_TEMPLATE = REPOSITORY / "deploy" / "images.yaml"
PLATFORM = "linux/arm64"
"""The task definition's CPU architecture (ARM64: Graviton Fargate Spot is the cheapest)."""
KEEP_IMAGES = 10
"""Images the repository's lifecycle policy keeps: the rollbacks that remain possible."""
TAG_LENGTH = 24
"""Hex digits of the build-context hash used as the tag (96 bits: collisions are not a concern)."""
IGNORED_PARTS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "node_modules"})
IGNORED_SUFFIXES = (".pyc", ".pyo")


# --------------------------------------------------------------------------------------------------------
# The build context and its tag
# --------------------------------------------------------------------------------------------------------


def dockerfile_sources(dockerfile: Path) -> list[str]:
    """The context paths the Dockerfile's COPY and ADD instructions read (not those `--from` a stage)."""
    text = re.sub(r"\\\r?\n", " ", dockerfile.read_text(encoding="utf-8"))
    sources: list[str] = []
    for line in text.splitlines():
        words = line.strip().split(None, 1)
        if len(words) < 2 or words[0].upper() not in ("COPY", "ADD"):
            continue
        arguments = _instruction_arguments(words[1])
        if any(argument.startswith("--from") for argument in arguments):
            continue
        paths = [argument for argument in arguments if not argument.startswith("--")]
        sources.extend(paths[:-1])  # the last one is the destination
    return sources


def _instruction_arguments(rest: str) -> list[str]:
    """A COPY's arguments, in shell form (`COPY a b /dst`) or JSON form (`COPY ["a", "/dst"]`)."""
    if rest.lstrip().startswith("["):
        try:
            parsed = json.loads(rest)
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            return [str(item) for item in parsed]
    return shlex.split(rest)


def _context_files(context: Path, source: str) -> Iterator[Path]:
    """The files one COPY source names (a file, a folder's tree, or a glob), caches left out."""
    matches = sorted(context.glob(source)) if any(ch in source for ch in "*?[") else [context / source]
    for match in matches:
        if not match.exists():
            raise UsageError(f"{source} is not in {context} (named by the Dockerfile or the deploy)")
        candidates = sorted(match.rglob("*")) if match.is_dir() else [match]
        for path in candidates:
            relative = path.relative_to(context).parts
            if (
                path.is_file()
                and not IGNORED_PARTS.intersection(relative)
                and path.suffix not in IGNORED_SUFFIXES
            ):
                yield path


def files_digest(context: Path, sources: Sequence[str], values: Mapping[str, str]) -> str:
    """A sha256 (hex) over `values` and every file under the `sources` in `context`, caches left out."""
    digest = hashlib.sha256()
    for name in sorted(values):
        digest.update(f"value {name}={values[name]}\n".encode())
    files: set[Path] = set()
    for source in sources:
        files.update(path.resolve() for path in _context_files(context, source))
    root = context.resolve()
    for path in sorted(files):
        data = path.read_bytes()
        digest.update(f"file {path.relative_to(root).as_posix()} {len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()


def context_tag(context: Path, dockerfile: Path, build_args: Mapping[str, str], platform: str) -> str:
    """The image's tag: a hash of the Dockerfile, what it copies, the build arguments and the platform."""
    sources = [
        dockerfile.resolve().relative_to(context.resolve()).as_posix(),
        *dockerfile_sources(dockerfile),
    ]
    values = {**{f"arg {name}": value for name, value in build_args.items()}, "platform": platform}
    return files_digest(context, sources, values)[:TAG_LENGTH]


# --------------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Builder:
    """A container builder on this machine and the commands it builds, logs in and pushes with."""

    name: str
    program: str
    build_command: tuple[str, ...]
    """What precedes the build's own arguments: `docker buildx build`, `podman build`, `finch build`."""
    pushes_while_building: bool

    def build(self, image: str, dockerfile: Path, context: Path, build_args: Mapping[str, str]) -> list[str]:
        """The command that builds `image` for the task's platform (and, with buildx, pushes it)."""
        argv = [*self.build_command, "--platform", PLATFORM, "--file", str(dockerfile), "--tag", image]
        for name in sorted(build_args):
            argv += ["--build-arg", f"{name}={build_args[name]}"]
        if self.pushes_while_building:
            # One plain manifest, pushed straight from the builder: no attestation index, no local copy.
            argv += ["--provenance=false", "--push"]
        return [*argv, str(context)]

    def push(self, image: str) -> list[str]:
        """The command that pushes a built image (empty when the build pushed it already)."""
        return [] if self.pushes_while_building else [self.program, "push", image]

    def login(self, registry: str) -> list[str]:
        """The command that logs in to the registry; the password goes to its stdin."""
        return [self.program, "login", "--username", "AWS", "--password-stdin", registry]


BUILDERS = (
    (
        Builder("docker buildx", "docker", ("docker", "buildx", "build"), True),
        ("docker", "buildx", "version"),
    ),
    (Builder("podman", "podman", ("podman", "build"), False), ("podman", "--version")),
    (Builder("finch", "finch", ("finch", "build"), False), ("finch", "--version")),
)
"""In order of preference, each with the command that proves it works (Docker without buildx does not)."""


def find_builder(runner: Runner) -> Builder | None:
    """The first container builder that is installed and answers; None when there is none."""
    for builder, probe in BUILDERS:
        if runner.which(builder.program) and runner.run(Command(probe, show=False)).code == 0:
            return builder
    return None


NO_BUILDER = (
    "no container builder found: install Docker with buildx (Docker Desktop, or docker-buildx on Linux), "
    "Podman or Finch, then run make deploy again"
)
CANNOT_RUN_ARM64 = (
    "this machine cannot run linux/arm64 programs while building: install QEMU's binfmt handlers "
    "(docker run --privileged --rm tonistiigi/binfmt --install arm64, or apt-get install qemu-user-static), "
    "then run make deploy again"
)


# --------------------------------------------------------------------------------------------------------
# The repository (a CloudFormation stack of its own) and its images
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Repository:
    """The bridge's ECR repository."""

    name: str
    uri: str

    def tagged(self, tag: str) -> str:
        """The image reference by tag."""
        return f"{self.uri}:{tag}"

    def pinned(self, digest: str) -> str:
        """The image reference by digest: what the stack is given."""
        return f"{self.uri}@{digest}"


def images_stack_name(stack: str) -> str:
    """The bootstrap stack's name; UsageError when the main stack's name leaves no room for it."""
    name = f"{stack}-images"
    if len(name) > 128:
        raise UsageError(
            f"stack name {stack!r} is too long: at most 121 characters (it is also used in {name})"
        )
    return name


def ensure_repository(cloudformation: CloudFormationClient, stack: str, out: TextIO) -> Repository:
    """Create or update the `<stack>-images` stack when its template or parameters differ; its repository."""
    name = images_stack_name(stack)
    body = IMAGES_TEMPLATE.read_text(encoding="utf-8")
    parameters = {"RepositoryName": f"{stack.lower()}-bridge", "KeepImages": str(KEEP_IMAGES)}
    described = describe_stack(cloudformation, name)
    if described is None:
        print(f"creating the image repository (stack {name})", file=out, flush=True)
        _change(cloudformation, "create", name, body, parameters, out)
        described = describe_stack(cloudformation, name)
    elif _needs_update(cloudformation, described, body, parameters):
        print(f"updating the image repository (stack {name})", file=out, flush=True)
        _change(cloudformation, "update", name, body, parameters, out)
        described = describe_stack(cloudformation, name)
    outputs = {str(o["OutputKey"]): str(o["OutputValue"]) for o in (described or {}).get("Outputs") or []}
    if "RepositoryUri" not in outputs or "RepositoryName" not in outputs:
        raise Failure(f"stack {name} has no RepositoryUri output: delete it and run make deploy again")
    return Repository(outputs["RepositoryName"], outputs["RepositoryUri"])


def _needs_update(
    cloudformation: CloudFormationClient, current: Mapping[str, Any], body: str, parameters: Mapping[str, str]
) -> bool:
    """Whether the stack's template or parameters differ from these (a failed stack always needs one)."""
    if not str(current.get("StackStatus", "")).endswith("_COMPLETE") or "ROLLBACK" in current["StackStatus"]:
        return True
    deployed = {
        str(p["ParameterKey"]): str(p.get("ParameterValue", "")) for p in current.get("Parameters") or []
    }
    if any(deployed.get(key) != value for key, value in parameters.items()):
        return True
    with aws_errors():
        template = cloudformation.get_template(StackName=str(current["StackName"]))["TemplateBody"]
    # TemplateBody is the text as uploaded (the stubs type it as the JSON form only)
    return bool(str(template) != body)


def _change(
    cloudformation: CloudFormationClient,
    action: str,
    name: str,
    body: str,
    parameters: Mapping[str, str],
    out: TextIO,
) -> None:
    """Create or update the stack and wait for it; Failure naming the resource and reason if it fails."""
    values: Sequence[Any] = [
        {"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()
    ]
    with aws_errors(hint=f"see the events of stack {name} in the CloudFormation console"):
        if action == "create":
            cloudformation.create_stack(StackName=name, TemplateBody=body, Parameters=values)
        else:
            cloudformation.update_stack(StackName=name, TemplateBody=body, Parameters=values)
    if wait_until_settled(cloudformation, name, out) not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        raise stack_failure(cloudformation, name)


class Registry:
    """The ECR calls the deploy makes (boto3's ECR client; there are no type stubs for it here)."""

    def __init__(self, ecr: Any) -> None:
        self.ecr = ecr

    def digest(self, repository: Repository, tag: str) -> str | None:
        """The digest of the image with this tag, None when it was never pushed."""
        try:
            with aws_errors():
                found = self.ecr.describe_images(repositoryName=repository.name, imageIds=[{"imageTag": tag}])
        except Failure as exc:
            if "ImageNotFoundException" in str(exc):
                return None
            raise
        details = found.get("imageDetails") or []
        return str(details[0]["imageDigest"]) if details else None

    def has_digest(self, repository: Repository, digest: str) -> bool:
        """Whether the image with this digest is still in the repository (the lifecycle may expire it)."""
        try:
            with aws_errors():
                found = self.ecr.describe_images(
                    repositoryName=repository.name, imageIds=[{"imageDigest": digest}]
                )
        except Failure as exc:
            if "ImageNotFoundException" in str(exc):
                return False
            raise
        return bool(found.get("imageDetails"))

    def password(self) -> str:
        """A registry password valid for 12 hours (GetAuthorizationToken's `AWS:<password>`, decoded)."""
        with aws_errors():
            data = self.ecr.get_authorization_token()["authorizationData"]
        token = base64.b64decode(str(data[0]["authorizationToken"])).decode()
        user, _, password = token.partition(":")
        if user != "AWS" or not password:
            raise Failure("ECR returned an authorization token of an unexpected form")
        return password


def build_and_push(
    runner: Runner,
    builder: Builder,
    registry: Registry,
    repository: Repository,
    tag: str,
    build_args: Mapping[str, str],
    out: TextIO,
    *,
    context: Path = REPOSITORY,
) -> str:
    """Log in, build the context's bridge/Dockerfile for linux/arm64, push; the pushed image's digest."""
    image = repository.tagged(tag)
    password = registry.password()
    registry_host = repository.uri.split("/", 1)[0]
    print(f"logging {builder.name} in to {registry_host}", file=out, flush=True)
    login = runner.run(Command(builder.login(registry_host), stdin=password + "\n", show=False))
    if login.code != 0:
        last = redact(_last_line(login.output), [password])
        raise Failure(f"{builder.name} could not log in to {registry_host}: {last}")
    print(
        f"building {image} for {PLATFORM} with {builder.name} (a first build takes minutes)",
        file=out,
        flush=True,
    )
    dockerfile = context / DOCKERFILE.relative_to(REPOSITORY)
    built = runner.run(Command(builder.build(image, dockerfile, context, build_args)))
    if built.code != 0:
        if "exec format error" in built.output:
            raise UsageError(CANNOT_RUN_ARM64)
        raise Failure(
            f"building the bridge image failed ({builder.name} exit {built.code}): see its output above"
        )
    push = builder.push(image)
    if push:
        print(f"pushing {image}", file=out, flush=True)
        pushed = runner.run(Command(push))
        if pushed.code != 0:
            raise Failure(f"pushing the bridge image failed ({builder.name} exit {pushed.code}): see above")
    digest = registry.digest(repository, tag)
    if digest is None:
        raise Failure(f"{image} was pushed but ECR does not list it: run make deploy again")
    return digest


def _last_line(output: str) -> str:
    """The last non-empty line of a command's output."""
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


# --------------------------------------------------------------------------------------------------------
# The SOCI index (lazy loading on Fargate)
# --------------------------------------------------------------------------------------------------------

SOCI_SUFFIX = "-soci"
"""The tag of the SOCI-enabled image is the image's own tag with this suffix."""
SOCI_MISSING = (
    "  no SOCI index: {missing} not installed, so Fargate downloads the whole image before each start "
    "(docs/cold-start.md). To have it lazy-loaded, install the SOCI CLI 0.10 or newer "
    "(https://github.com/awslabs/soci-snapshotter/releases) and ORAS (https://oras.land/docs/installation); "
    "the next make deploy adds the index"
)


@dataclass(frozen=True)
class SociIndexer:
    """The SOCI CLI and ORAS: they make a pushed image a SOCI-enabled one (index manifest v2).

    `soci convert --standalone` needs neither containerd nor root: ORAS copies the pushed image from ECR
    into an OCI layout, soci packs the image and its SOCI index (a table of contents of each layer of
    10 MiB or more) into a new image index there, and ORAS pushes that index back; its layers are the
    pushed image's, so only a few kilobytes of metadata go up."""

    soci: str
    oras: str

    def login(self, registry: str) -> list[str]:
        """ORAS's login to the registry; the password goes to its stdin."""
        return [self.oras, "login", "--username", "AWS", "--password-stdin", registry]

    def fetch(self, image: str, layout: Path) -> list[str]:
        """Copy the pushed image from the registry into an OCI layout folder."""
        return [self.oras, "cp", "--to-oci-layout", image, f"{layout}:image"]

    def convert(self, source: Path, target: Path) -> list[str]:
        """Make the SOCI-enabled image of the task's platform in a new layout (no containerd: standalone)."""
        return [
            self.soci,
            "convert",
            "--standalone",
            "--format",
            "oci-dir",
            "--platform",
            PLATFORM,
            str(source),
            str(target),
        ]

    def push(self, layout: Path, digest: str, image: str) -> list[str]:
        """Copy the SOCI-enabled image (by its digest in the layout) to the registry under `image`."""
        return [self.oras, "cp", "--from-oci-layout", f"{layout}@{digest}", image]


def find_soci_indexer(runner: Runner) -> SociIndexer | str:
    """The SOCI CLI and ORAS when both are installed, else the names of those missing."""
    missing = [name for name in ("soci", "oras") if runner.which(name) is None]
    return " and ".join(missing) if missing else SociIndexer("soci", "oras")


def add_soci_index(
    runner: Runner, indexer: SociIndexer, registry: Registry, repository: Repository, tag: str, out: TextIO
) -> str | None:
    """Push the SOCI-enabled image of the image `tag` as `tag`-soci; its digest, or None (told why) when a
    step failed: the plain image still runs, only its start is slower."""
    image, indexed = repository.tagged(tag), repository.tagged(tag + SOCI_SUFFIX)
    password = registry.password()
    host = repository.uri.split("/", 1)[0]
    with tempfile.TemporaryDirectory(prefix="soci-") as scratch:
        source, target = Path(scratch) / "image", Path(scratch) / "soci"
        steps = [
            (f"logging ORAS in to {host}", Command(indexer.login(host), stdin=password + "\n", show=False)),
            (
                f"fetching {image} to index it (its compressed size, once per image)",
                Command(indexer.fetch(image, source)),
            ),
            ("building its SOCI index (soci convert)", Command(indexer.convert(source, target))),
        ]
        for what, command in steps:
            print(f"  {what}", file=out, flush=True)
            done = runner.run(command)
            if done.code != 0:
                _soci_failed(what, done.output, password, out)
                return None
        digest = _layout_digest(target)
        if digest is None:
            _soci_failed("reading the SOCI-enabled image", "no image in its layout", password, out)
            return None
        print(f"  pushing the SOCI-enabled image as {indexed}", file=out, flush=True)
        pushed = runner.run(Command(indexer.push(target, digest, indexed)))
        if pushed.code != 0:
            _soci_failed(f"pushing {indexed}", pushed.output, password, out)
            return None
    found = registry.digest(repository, tag + SOCI_SUFFIX)
    if found is None:
        _soci_failed(f"finding {indexed} in ECR", "not listed after the push", password, out)
        return None
    return found


def _layout_digest(layout: Path) -> str | None:
    """The digest of the (only) image of an OCI layout folder."""
    try:
        manifests = json.loads((layout / "index.json").read_text(encoding="utf-8")).get("manifests") or []
    except (OSError, ValueError):
        return None
    return str(manifests[0]["digest"]) if manifests and "digest" in manifests[0] else None


def _soci_failed(step: str, output: str, password: str, out: TextIO) -> None:
    """Say which step of the SOCI index failed and that the deploy goes on with the plain image."""
    print(
        f"  warning: no SOCI index ({step} failed: {redact(_last_line(output), [password])}); "
        "the stack runs the image without it, which Fargate downloads whole before each start",
        file=out,
        flush=True,
    )
