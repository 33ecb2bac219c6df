"""What the warm-handler benchmarks against in-process moto share: AWS calls counted by operation, and
the time spent inside moto's emulation measured apart (so it can be subtracted: Lambda has no moto)."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from unittest import mock

import botocore.client
from moto.core.botocore_stubber import BotocoreStubber

calls: Counter[str] = Counter()
"""`service.Operation` → how many times it was called while `counting()` was active."""
in_moto = [0.0]
"""Seconds spent in moto's emulation since the caller last reset it."""

# Every API call goes through this private method; botocore-stubs declare no private members.
_original = botocore.client.BaseClient._make_api_call  # type: ignore[attr-defined]
_emulate = BotocoreStubber.process_request


def _counting(self: Any, operation_name: str, api_params: Any) -> Any:
    calls[f"{self.meta.service_model.service_name}.{operation_name}"] += 1
    return _original(self, operation_name, api_params)


def _timed_emulation(self: Any, request: Any) -> Any:
    t = time.perf_counter()
    try:
        return _emulate(self, request)
    finally:
        in_moto[0] += time.perf_counter() - t


BotocoreStubber.process_request = _timed_emulation  # type: ignore[method-assign]


@contextlib.contextmanager
def counting() -> Iterator[Counter[str]]:
    """Count every boto3 call made inside the block (the counter starts empty)."""
    calls.clear()
    with mock.patch.object(botocore.client.BaseClient, "_make_api_call", _counting):
        yield calls


def percentile(samples: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of the samples."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
