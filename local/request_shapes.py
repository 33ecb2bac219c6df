"""A JSON-protocol request checked against the service's own model (botocore's copy of it), field by field.

An AWS service refuses a request whose fields do not have the types its API reference gives them, or that
leaves out a required field, before the action runs; a stand-in that skipped this would fail later with a
server error, or act on nonsense. Fields the model does not name are ignored, as the services ignore them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import botocore.session
from botocore.model import ListShape, MapShape, Shape, StructureShape


class ShapeError(Exception):
    """A request field missing or of the wrong type; the message names it as the service would."""


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# JSON types by model type; JSON has no bytes or dates, so blobs travel as base64 text and timestamps
# as epoch seconds. bool is an int in Python but never a number in JSON.
_SCALARS: dict[str, tuple[str, Callable[[object], bool]]] = {
    "string": ("a string", lambda v: isinstance(v, str)),
    "blob": ("a base64 string", lambda v: isinstance(v, str)),
    "boolean": ("a boolean", lambda v: isinstance(v, bool)),
    "integer": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "long": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "float": ("a number", _number),
    "double": ("a number", _number),
    "timestamp": ("a number of seconds", _number),
}


class ServiceShapes:
    """The input shapes of one service's operations."""

    def __init__(self, service_name: str) -> None:
        self.model = botocore.session.get_session().get_service_model(service_name)

    def check(self, operation: str, body: object) -> None:
        """Raise ShapeError naming the first field of `body` that the operation's input does not allow."""
        input_shape = self.model.operation_model(operation).input_shape
        if input_shape is not None:
            _check(body, input_shape, "")


def _check(value: object, shape: Shape, path: str) -> None:
    if isinstance(shape, StructureShape):
        _check_structure(value, shape, path)
    elif isinstance(shape, ListShape):
        if not isinstance(value, list):
            raise ShapeError(f"{_name(path)} must be a list")
        for index, item in enumerate(value):
            _check(item, shape.member, f"{path}[{index}]")
    elif isinstance(shape, MapShape):
        if not isinstance(value, dict):
            raise ShapeError(f"{_name(path)} must be an object")
        for key, item in value.items():
            _check(item, shape.value, f"{path}.{key}")
    else:
        expected, allowed = _SCALARS[shape.type_name]
        if not allowed(value):
            raise ShapeError(f"{_name(path)} must be {expected}, not {_json_type(value)}")


def _check_structure(value: object, shape: StructureShape, path: str) -> None:
    if not isinstance(value, dict):
        raise ShapeError(f"{_name(path)} must be an object")
    for required in shape.required_members:
        if value.get(required) is None:
            raise ShapeError(f"{_name(f'{path}.{required}')} is required")
    for name, member in shape.members.items():
        if value.get(name) is not None:
            _check(value[name], member, f"{path}.{name}")


def _name(path: str) -> str:
    return path.lstrip(".") or "the request"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", list: "a list", dict: "an object"}.get(
        type(value), "a number"
    )
