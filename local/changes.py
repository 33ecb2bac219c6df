"""What one request to the local AWS changed, as a journal record that puts the same change back on replay.

A change is the state *after* the request of what it touched, taken while no other write runs: the item
of a DynamoDB key, the versions an S3 object gained or lost, a bucket's settings, or a whole service where
a request is not one of those (table and pool administration, Cognito's users). Replaying the records in
order over the last snapshot gives back moto's state exactly, random ids included, without running any
request a second time. When a request's reach is not known for sure, the whole service is recorded: slower,
never wrong.
"""

from __future__ import annotations

import copy
import json
import pickle
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

from moto.backends import get_backend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.s3.models import FakeBucket, s3_backends
from moto.s3.utils import _VersionedKeyStore

from local.moto_state import dump_service, dumps, load_service
from local.resolve import ACCOUNT, REGION

PARTITION = "aws"
_CREDENTIAL = re.compile(r"Credential=[^/\s,]+/\d{8}/([^/]+)/([^/]+)/aws4_request")
_JSON_SERVICES = {"DynamoDB_": "dynamodb", "AWSCognitoIdentityProviderService.": "cognito-idp"}
_READS = ("Get", "BatchGet", "Query", "Scan", "Describe", "List", "TransactGet", "AdminGet", "AdminList")
_COGNITO_TOKENS_ONLY = {
    "InitiateAuth",
    "AdminInitiateAuth",
    "GlobalSignOut",
    "AdminUserGlobalSignOut",
    "RevokeToken",
}
"""Sign-ins and sign-outs change only tokens, which are not kept (see local/moto_state.py)."""
_OBJECT_QUERY = {"versionId", "x-id", "uploadId", "partNumber", "uploads"}
"""The query parameters of object requests whose whole effect is on the object's versions."""


# ---------------------------------------------------------------------------------------------- changes


class Change(Protocol):
    """One journal record."""

    def apply(self) -> None:
        """Put the change back into moto."""


@dataclass(frozen=True)
class ItemChange:
    """A DynamoDB item as a request left it (None: deleted)."""

    region: str
    table: str
    hash_key: DynamoType
    range_key: DynamoType | None
    item: Item | None

    def apply(self) -> None:
        """Store or delete the item."""
        table = get_backend("dynamodb")[ACCOUNT][self.region].tables.get(self.table)
        if table is None:
            return
        items: dict[DynamoType, Any] = (
            table.items[self.hash_key] if self.range_key is not None else table.items
        )
        key = self.range_key if self.range_key is not None else self.hash_key
        if self.item is None:
            items.pop(key, None)
        else:
            items[key] = self.item


@dataclass(frozen=True)
class TableChange:
    """A DynamoDB table, its items included, as a request left it (None: deleted)."""

    region: str
    table: str
    value: Any

    def apply(self) -> None:
        """Store or delete the table."""
        tables = get_backend("dynamodb")[ACCOUNT][self.region].tables
        if self.value is None:
            tables.pop(self.table, None)
        else:
            tables[self.table] = self.value


@dataclass(frozen=True)
class ObjectChange:
    """The versions of one S3 object that a request removed and added (a plain bucket's overwrite removes
    the old "null" version and adds the new one)."""

    bucket: str
    key: str
    removed: tuple[str, ...]
    added: tuple[Any, ...]

    def apply(self) -> None:
        """Remove and add the same versions."""
        bucket = _s3().buckets.get(self.bucket)
        if bucket is None:
            return
        kept = [v for v in bucket.keys.getlist(self.key, []) if str(v.version_id) not in self.removed]
        versions = kept + list(self.added)
        if versions:
            bucket.keys.setlist(self.key, versions)
        elif self.key in bucket.keys:
            bucket.keys.pop(self.key)


@dataclass(frozen=True)
class BucketChange:
    """A bucket's settings and unfinished multipart uploads, its objects left out (None: deleted)."""

    bucket: str
    value: FakeBucket | None

    def apply(self) -> None:
        """Store or delete the bucket, keeping the objects it holds."""
        buckets = _s3().buckets
        current = buckets.get(self.bucket)
        if self.value is None:
            buckets.pop(self.bucket, None)
            s3_backends.bucket_accounts.pop(self.bucket, None)
            return
        restored = copy.copy(self.value)
        restored.keys = current.keys if current is not None else _VersionedKeyStore()
        buckets[self.bucket] = restored
        s3_backends.bucket_accounts[self.bucket] = (PARTITION, ACCOUNT)


@dataclass(frozen=True)
class ServiceChange:
    """A whole service's state."""

    service: str
    blob: bytes

    def apply(self) -> None:
        """Replace the service's state."""
        load_service(self.service, self.blob)


def encode(change: Change) -> bytes:
    """A change as journal payload."""
    return dumps(change)


def decode(payload: bytes) -> Change:
    """A journal payload as the change it records."""
    change = pickle.loads(payload)  # our own file, mode 600
    if not hasattr(change, "apply"):
        raise ValueError(f"a journal record holds a {type(change).__name__}")
    return change  # type: ignore[no-any-return]


def _s3() -> Any:
    return get_backend("s3")[ACCOUNT][PARTITION]


# ---------------------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Request:
    """What the journal needs of one HTTP request to moto."""

    method: str
    path: str
    headers: dict[str, str]
    query: str = ""
    body: bytes = b""

    @property
    def target(self) -> str:
        """X-Amz-Target (JSON protocols)."""
        return self.headers.get("x-amz-target", "")

    def service_and_region(self) -> tuple[str | None, str]:
        """The AWS service a request is for, by its signature or target; its region."""
        signed = _CREDENTIAL.search(self.headers.get("authorization", "") or unquote(self.query))
        if signed:
            return signed.group(2), signed.group(1)
        for prefix, service in _JSON_SERVICES.items():
            if self.target.startswith(prefix):
                return service, REGION
        return None, REGION


class Capture(Protocol):
    """Begun just before a request runs (no other write runs meanwhile); says afterwards what it changed."""

    def begin(self) -> None:
        """Note what the request may change, as it is before."""

    def changes(self, status: int) -> list[Change]:
        """The records of what the request did, given its HTTP status."""


class _After:
    """A capture that needs nothing from before the request."""

    def begin(self) -> None:
        return None


def capture(request: Request) -> Capture | None:
    """How to record what a request changes; None for requests that change nothing that is kept."""
    service, region = request.service_and_region()
    if service == "dynamodb":
        operation = request.target.partition(".")[2]
        return None if operation.startswith(_READS) else _dynamodb(operation, _json(request.body), region)
    if service == "cognito-idp":
        operation = request.target.partition(".")[2]
        if operation.startswith(_READS) or operation in _COGNITO_TOKENS_ONLY:
            return None
        return _WholeService("cognito-idp")
    if service == "s3" and request.method not in ("GET", "HEAD", "OPTIONS"):
        return _s3_capture(request)
    if service == "scheduler" and request.method not in ("GET", "HEAD", "OPTIONS"):
        # Users' wake schedules: few and small, so the whole service is recorded.
        return _WholeService("scheduler")
    return None


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass
class _WholeService(_After):
    service: str
    always: bool = False
    """Record even after an error (moto refuses before it changes anything, except where it cannot say)."""

    def changes(self, status: int) -> list[Change]:
        if status >= 400 and not self.always:
            return []
        return [ServiceChange(self.service, dump_service(self.service))]


# ---------------------------------------------------------------------------------------------- DynamoDB


@dataclass
class _DynamoDbItems(_After):
    region: str
    keys: list[tuple[str, dict[str, Any]]]
    """(table, attributes holding at least the key) of every item the request may write."""

    def changes(self, status: int) -> list[Change]:
        backend = get_backend("dynamodb")[ACCOUNT][self.region]
        changes: list[Change] = []
        for name, attributes in self.keys:
            table = backend.tables.get(name)
            if table is None:
                continue
            try:
                hash_key = DynamoType(attributes[table.hash_key_attr])
                range_key = DynamoType(attributes[table.range_key_attr]) if table.range_key_attr else None
            except (KeyError, TypeError, AttributeError):
                continue  # a malformed key: moto refused the request
            stored: dict[DynamoType, Any] = table.items
            if range_key is None:
                item = stored.get(hash_key)
            else:
                item = stored[hash_key].get(range_key) if hash_key in stored else None
            changes.append(ItemChange(self.region, name, hash_key, range_key, item))
        return changes


@dataclass
class _DynamoDbTable(_After):
    region: str
    table: str

    def changes(self, status: int) -> list[Change]:
        if status >= 400:
            return []
        value = get_backend("dynamodb")[ACCOUNT][self.region].tables.get(self.table)
        return [TableChange(self.region, self.table, value)]


def _batch_keys(body: dict[str, Any]) -> list[tuple[Any, Any]]:
    return [
        (
            name,
            (request.get("PutRequest") or {}).get("Item") or (request.get("DeleteRequest") or {}).get("Key"),
        )
        for name, requests in (body.get("RequestItems") or {}).items()
        for request in requests
    ]


def _transaction_keys(body: dict[str, Any]) -> list[tuple[Any, Any]]:
    return [
        (part.get("TableName"), part.get("Item") or part.get("Key"))
        for entry in body.get("TransactItems") or []
        for kind, part in entry.items()
        if kind in ("Put", "Update", "Delete")
    ]


_WRITTEN_KEYS: dict[str, Callable[[dict[str, Any]], list[tuple[Any, Any]]]] = {
    "PutItem": lambda body: [(body.get("TableName"), body.get("Item") or {})],
    "UpdateItem": lambda body: [(body.get("TableName"), body.get("Key") or {})],
    "DeleteItem": lambda body: [(body.get("TableName"), body.get("Key") or {})],
    "BatchWriteItem": _batch_keys,
    "TransactWriteItems": _transaction_keys,
}
"""The (table, key or item) pairs each item-writing DynamoDB operation names."""


def _dynamodb(operation: str, body: dict[str, Any], region: str) -> Capture:
    written = _WRITTEN_KEYS.get(operation)
    keys = written(body) if written else None
    table = body.get("TableName")
    if keys is not None and all(isinstance(n, str) and isinstance(k, dict) for n, k in keys):
        return _DynamoDbItems(region, [(str(n), dict(k)) for n, k in keys])
    if isinstance(table, str) and keys is None:
        return _DynamoDbTable(region, table)
    return _WholeService("dynamodb", always=keys is not None)


# ---------------------------------------------------------------------------------------------- S3


@dataclass
class _S3Objects:
    bucket: str
    keys: list[str]
    created: bool
    """A PUT or POST that succeeds must add a version; if none is seen, the request was misread."""
    before: dict[str, list[Any]] = field(default_factory=dict)

    def begin(self) -> None:
        bucket = _s3().buckets.get(self.bucket)
        for key in self.keys:
            self.before[key] = list(bucket.keys.getlist(key, [])) if bucket is not None else []

    def changes(self, status: int) -> list[Change]:
        bucket = _s3().buckets.get(self.bucket)
        changes: list[Change] = []
        for key in self.keys:
            after = list(bucket.keys.getlist(key, [])) if bucket is not None else []
            change = self._change(key, self.before[key], after)
            if change is not None:
                changes.append(change)
        if self.created and status < 300 and not changes:
            return _WholeService("s3", always=True).changes(status)
        return changes

    def _change(self, key: str, before: list[Any], after: list[Any]) -> ObjectChange | None:
        """The versions of `key` the request removed and added (by identity), or None if neither."""
        removed = tuple(str(v.version_id) for v in before if not any(v is a for a in after))
        added = tuple(v for v in after if not any(v is b for b in before))
        return ObjectChange(self.bucket, key, removed, added) if removed or added else None


@dataclass
class _S3Bucket(_After):
    bucket: str

    def changes(self, status: int) -> list[Change]:
        if status >= 400:
            return []
        bucket = _s3().buckets.get(self.bucket)
        if bucket is None:
            return [BucketChange(self.bucket, None)]
        settings = copy.copy(bucket)
        settings.keys = _VersionedKeyStore()
        return [BucketChange(self.bucket, settings)]


@dataclass
class _Both:
    parts: tuple[Capture, ...]

    def begin(self) -> None:
        for part in self.parts:
            part.begin()

    def changes(self, status: int) -> list[Change]:
        return [change for part in self.parts for change in part.changes(status)]


def _s3_capture(request: Request) -> Capture:
    host = request.headers.get("host", "").rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", "[::1]"):
        return _WholeService("s3", always=True)  # virtual-hosted style: the bucket is in the host name
    bucket, _, key = request.path.lstrip("/").partition("/")
    query = set(parse_qs(request.query, keep_blank_values=True))
    tagged = "x-amz-tagging" in request.headers or "tagging" in query  # tags live outside the bucket
    if not bucket or tagged:
        return _WholeService("s3", always=True)
    if key:
        if not query <= _OBJECT_QUERY:
            return _WholeService("s3", always=True)
        plain_write = request.method in ("PUT", "POST") and not query - {"x-id"}
        objects = _S3Objects(bucket, [key], created=plain_write)
        return _Both((objects, _S3Bucket(bucket))) if query & {"uploadId", "uploads"} else objects
    if "delete" in query:
        return _S3Objects(bucket, _deleted_keys(request.body), created=False)
    return _S3Bucket(bucket)


def _deleted_keys(body: bytes) -> list[str]:
    """The keys of a DeleteObjects request (<Delete><Object><Key>…</Key></Object>…</Delete>)."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return []
    return [element.text or "" for element in root.iter() if element.tag.rpartition("}")[2] == "Key"]
