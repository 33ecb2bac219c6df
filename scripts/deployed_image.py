"""The image a deploy runs: the checkout's bridge image (found in ECR by its context tag, else built and
pushed, with its SOCI index when the SOCI CLI is there), or on --rollback the one deployed before."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.aws_errors import UsageError
from scripts.bridge_image import (
    DOCKERFILE,
    NO_BUILDER,
    PLATFORM,
    REPOSITORY,
    SOCI_MISSING,
    SOCI_SUFFIX,
    Registry,
    Repository,
    SociIndexer,
    add_soci_index,
    build_and_push,
    context_tag,
    find_builder,
    find_soci_indexer,
)
from scripts.commands import Runner
from scripts.deploy_answers import Answers, Console


@dataclass(frozen=True)
class Image:
    """The image the stack is to run."""

    uri: str
    openclaw: str
    built: bool


def current_image(
    registry: Registry, runner: Runner, repository: Repository, version: str, console: Console, checkout: Path
) -> Image:
    """This checkout's bridge image in ECR: found by its context tag, else built and pushed; its
    SOCI-enabled form (lazy loading on Fargate) when the SOCI CLI is installed."""
    build_args = {"OPENCLAW_VERSION": version}
    tag = context_tag(checkout, checkout / DOCKERFILE.relative_to(REPOSITORY), build_args, PLATFORM)
    indexer = find_soci_indexer(runner)
    if isinstance(indexer, SociIndexer):
        indexed = registry.digest(repository, tag + SOCI_SUFFIX)
        if indexed is not None:
            print(f"  image {tag} and its SOCI index are in ECR already: no build, no push", file=console.out)
            return Image(repository.pinned(indexed), version, built=False)
    digest = registry.digest(repository, tag)
    built = digest is None
    if digest is not None:
        print(f"  image {tag} is in ECR already: no build, no push", file=console.out)
    else:
        builder = find_builder(runner)
        if builder is None:
            raise UsageError(NO_BUILDER)
        digest = build_and_push(
            runner, builder, registry, repository, tag, build_args, console.out, context=checkout
        )
        print(f"  pushed {repository.tagged(tag)} ({digest})", file=console.out)
    if not isinstance(indexer, SociIndexer):
        print(SOCI_MISSING.format(missing=indexer), file=console.out)
        return Image(repository.pinned(digest), version, built=built)
    indexed = add_soci_index(runner, indexer, registry, repository, tag, console.out)
    if indexed is None:
        return Image(repository.pinned(digest), version, built=built)
    print(
        f"  pushed {repository.tagged(tag + SOCI_SUFFIX)} ({indexed}): Fargate lazy-loads it",
        file=console.out,
    )
    return Image(repository.pinned(indexed), version, built=built)


def previous_image(
    registry: Registry, answers: Answers, repository: Repository, deployed_image: str | None
) -> Image:
    """The image deployed before the one the stack runs now (--rollback); UsageError when there is none."""
    candidates = [entry for entry in reversed(answers.deployed) if entry.image != deployed_image]
    if not candidates:
        raise UsageError(
            f"nothing to roll back to: {answers.path} remembers no other image deployed from this clone"
        )
    target = candidates[0]
    digest = target.image.rpartition("@")[2]
    if not registry.has_digest(repository, digest):
        raise UsageError(
            f"the previous image {target.image} has expired from ECR: it cannot be rolled back to"
        )
    return Image(target.image, target.openclaw, built=False)


def choose_image(
    registry: Registry,
    runner: Runner,
    answers: Answers,
    repository: Repository,
    stack: Mapping[str, Any] | None,
    console: Console,
    *,
    checkout: Path,
    pinned: str,
    rollback: bool,
) -> Image:
    """The image to deploy: the checkout's pinned OpenClaw (built unless in ECR), or the previous one."""
    live_image = _live_parameter(stack, "BridgeImageUri")
    if not rollback:
        live_version = _live_parameter(stack, "OpenClawVersion")
        if live_version and live_version != pinned:
            print(f"  OpenClaw  the stack runs {live_version}; this checkout pins {pinned}", file=console.out)
        return current_image(registry, runner, repository, pinned, console, checkout)
    image = previous_image(registry, answers, repository, live_image)
    print(f"  rolling back from {live_image} to {image.uri}", file=console.out)
    if image.openclaw != pinned:
        # The pins are the checkout's, not the stack's: a rollback changes what runs, never the repository.
        print(
            f"  the repository still pins OpenClaw {pinned}, newer than the image rolled back to (OpenClaw "
            f"{image.openclaw}): the next make deploy without ARGS=--rollback deploys {pinned} again",
            file=console.out,
        )
    return image


def _live_parameter(stack: Mapping[str, Any] | None, key: str) -> str | None:
    """A parameter's value on the deployed stack."""
    for parameter in (stack or {}).get("Parameters") or []:
        if parameter.get("ParameterKey") == key:
            return str(parameter.get("ParameterValue", ""))
    return None
