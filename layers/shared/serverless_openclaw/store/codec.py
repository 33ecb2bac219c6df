"""Conversion between Python values and DynamoDB attribute values."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from serverless_openclaw import untrusted
from serverless_openclaw.conversations import InvalidCursor

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _to_dynamo(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    return value


def dump(item: Mapping[str, Any]) -> dict[str, AttributeValueTypeDef]:
    """Python dict → DynamoDB item; None values are left out."""
    return {k: _serializer.serialize(_to_dynamo(v)) for k, v in item.items() if v is not None}


def value(v: Any) -> AttributeValueTypeDef:
    """One Python value → a DynamoDB attribute value."""
    return _serializer.serialize(_to_dynamo(v))


def values(mapping: Mapping[str, Any]) -> dict[str, AttributeValueTypeDef]:
    """ExpressionAttributeValues from a plain dict."""
    return {k: value(v) for k, v in mapping.items()}


def load(item: Mapping[str, AttributeValueTypeDef] | None) -> dict[str, Any] | None:
    """DynamoDB item → Python dict with ints and floats instead of Decimals."""
    if item is None:
        return None
    return {k: _from_dynamo(_deserializer.deserialize(v)) for k, v in item.items()}


def encode_cursor(key: Mapping[str, AttributeValueTypeDef] | None) -> str | None:
    """LastEvaluatedKey → an opaque URL-safe cursor."""
    if not key:
        return None
    plain = load(key) or {}
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *, pk: str, sk_prefix: str) -> dict[str, AttributeValueTypeDef]:
    """Opaque cursor → ExclusiveStartKey, refused unless it stays inside the caller's partition and prefix."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        # A cursor comes back from the client: parsed like any untrusted JSON (depth, surrogates).
        plain = untrusted.parse_json(base64.urlsafe_b64decode(padded.encode()), max_bytes=len(cursor))
    except (ValueError, TypeError):
        raise InvalidCursor() from None
    if (
        not isinstance(plain, dict)
        or set(plain) != {"PK", "SK"}
        or plain.get("PK") != pk
        or not isinstance(plain.get("SK"), str)
        or not plain["SK"].startswith(sk_prefix)
    ):
        raise InvalidCursor()
    return dump(plain)
