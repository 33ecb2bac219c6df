"""Fixtures of the local stack's tests: moto as a new process finds it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.backends import get_backend
from moto.core.base_backend import BackendDict
from moto.s3.models import s3_backends

from local.aws import EmbeddedAws
from local.moto_state import PERSISTED_SERVICES
from local.resolve import Resolver


def forget_everything() -> None:
    """What a new process starts with: moto's backends are process-global, so empty them all."""
    BackendDict.reset()
    for service in PERSISTED_SERVICES:
        get_backend(service).clear()  # type: ignore[call-overload]
    # The index of bucket names lives beside the backends; a new process starts without it too.
    s3_backends.bucket_accounts.clear()


@pytest.fixture
def fresh_moto() -> Iterator[None]:
    forget_everything()
    yield
    forget_everything()


def started(state_dir: Path, template: dict[str, Any]) -> EmbeddedAws:
    """The local AWS serving on a free port with the template's resources, on a state directory."""
    aws = EmbeddedAws(state_dir, 0)
    aws.start()
    aws.create_resources(Resolver(template, "local"), template)
    return aws


def crash(aws: EmbeddedAws) -> None:
    """What SIGKILL (or a laptop that dies) leaves: the server gone without a final snapshot, and a new
    process that starts with moto's memory empty."""
    if aws.server is not None:
        aws.server.stop()
        aws.server = None
    aws.journal.close()  # as the process's death closes it: what was written stays, nothing more comes
    forget_everything()
