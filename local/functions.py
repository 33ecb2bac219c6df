"""The template's functions, run in-process like Lambda would run them: one instance per function.

Each `functions/<name>/app.py` is imported under its own module name with the environment the template
gives it (Globals merged with its own variables, intrinsics resolved), with the shared layer on the path.
Invocations are serialised across all functions: they share the layer's module-level Powertools Logger
and Metrics, whose per-invocation state would mix if two handlers ran at once in one process (each real
Lambda instance has its own). Invocations take milliseconds, so this costs nothing noticeable. A handler
that raises or outlives its `Timeout` is reported as Lambda would report it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from local.resolve import ACCOUNT, REGION, Resolver
from local.template import FunctionDefinition, TemplateError, function_definitions

REPO = Path(__file__).resolve().parent.parent

_environ_lock = threading.Lock()

Handler = Callable[[dict[str, Any], Any], Any]
"""A Lambda handler: (event, context) → result."""


class FunctionError(Exception):
    """The function raised or timed out (API Gateway answers "Internal server error")."""

    def __init__(self, logical_id: str, reason: str) -> None:
        super().__init__(f"{logical_id}: {reason}")
        self.logical_id = logical_id
        self.reason = reason


@dataclass
class LambdaContext:
    """The context object handlers receive (the attributes Powertools reads)."""

    function_name: str
    memory_limit_in_mb: int
    timeout: int
    invoked_function_arn: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = 0.0

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before Lambda would stop the invocation."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class LocalFunction:
    """One function: its definition, resolved environment and, once loaded, its handler."""

    definition: FunctionDefinition
    environment: dict[str, str]
    name: str
    handler: Handler | None = None

    @property
    def logical_id(self) -> str:
        """The template's logical id (`WsMessageFunction`)."""
        return self.definition.logical_id


@contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """os.environ with `values` set, restored afterwards (a process-wide lock keeps it coherent)."""
    with _environ_lock:
        saved = dict(os.environ)
        os.environ.update(values)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)


class FunctionHost:
    """Loads and invokes the template's functions in this process."""

    def __init__(self, resolver: Resolver, extra_environment: Mapping[str, str]) -> None:
        self.resolver = resolver
        self.extra_environment = dict(extra_environment)
        self.functions: dict[str, LocalFunction] = {}
        self._lock = threading.RLock()
        for logical_id, definition in function_definitions(resolver.template).items():
            name = resolver.physical_id(logical_id)
            env = {
                **resolver.environment(definition.environment),
                **self.extra_environment,
                "AWS_LAMBDA_FUNCTION_NAME": name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(definition.memory),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_REGION": REGION,
                "AWS_DEFAULT_REGION": REGION,
            }
            self.functions[logical_id] = LocalFunction(definition=definition, environment=env, name=name)

    def get(self, logical_id: str) -> LocalFunction:
        """A function by logical id; TemplateError naming the ones that exist otherwise."""
        if logical_id not in self.functions:
            known = ", ".join(sorted(self.functions))
            raise TemplateError(f"no function {logical_id!r} in the template (functions: {known})")
        return self.functions[logical_id]

    def by_arn(self, arn: str) -> str:
        """The logical id of the function with this ARN (what Scheduler and rules name as targets)."""
        name = arn.rsplit(":", 1)[-1] if arn.startswith("arn:aws:lambda:") else ""
        for logical_id, fn in self.functions.items():
            if fn.name == name:
                return logical_id
        raise TemplateError(f"{arn!r} is not a function of this stack; the local stack invokes only its own")

    def load(self, logical_id: str) -> Handler:
        """The function's handler; the first call imports its module (its cold start) in its environment."""
        fn = self.get(logical_id)
        if fn.handler is None:
            fn.handler = self._import(fn)
        return fn.handler

    def _import(self, fn: LocalFunction) -> Handler:
        logical_id, definition = fn.logical_id, fn.definition
        module_file, _, attribute = definition.handler.rpartition(".")
        source = REPO / definition.code_uri / f"{module_file.replace('.', '/')}.py"
        if not source.exists():
            raise TemplateError(f"{logical_id}: handler {definition.handler} not found at {source}")
        module_name = f"local_function_{logical_id}"
        spec = importlib.util.spec_from_file_location(module_name, source)
        if spec is None or spec.loader is None:
            raise TemplateError(f"{logical_id}: cannot import {source}")
        module = importlib.util.module_from_spec(spec)
        with self._lock, patched_environ(fn.environment):
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        handler = getattr(module, attribute, None)
        if not callable(handler):
            raise TemplateError(f"{logical_id}: {source} has no callable {attribute}")
        return cast(Handler, handler)

    def load_all(self) -> None:
        """Import every function up front, so a broken one fails the start, not the first request."""
        for logical_id in self.functions:
            self.load(logical_id)

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        """Run the handler (blocking) and return its result; FunctionError if it raised."""
        handler = self.load(logical_id)
        fn = self.functions[logical_id]
        with self._lock:
            # Created once the lock is held: time spent queueing is not the function's time.
            context = LambdaContext(
                function_name=fn.name,
                memory_limit_in_mb=fn.definition.memory,
                timeout=fn.definition.timeout,
                invoked_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{fn.name}",
                log_group_name=f"/aws/lambda/{fn.name}",
                _deadline=time.monotonic() + fn.definition.timeout,
            )
            try:
                return handler(event, context)
            except Exception as exc:
                traceback.print_exc()
                raise FunctionError(logical_id, f"{type(exc).__name__}: {exc}") from exc

    async def ainvoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        """invoke() in a worker thread, bounded by the function's Timeout like Lambda."""
        fn = self.get(logical_id)
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(self.invoke, logical_id, event), timeout=fn.definition.timeout + 1
            )
        except TimeoutError:
            raise FunctionError(logical_id, f"Task timed out after {fn.definition.timeout} seconds") from None
