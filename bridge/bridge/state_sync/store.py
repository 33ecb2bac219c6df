"""The user's backup in S3: every request state sync makes goes through here.

Every file of a root is the object `users/{userId}/{root}/{relative path}`; `users/{userId}/manifest.json`
lists them. The bucket is versioned, so an object overwritten or deleted by a backup stays recoverable,
and the manifest names the exact version of each file.
"""

from __future__ import annotations

import time
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from bridge.state_sync.manifest import Entry, parse_manifest, serialise_manifest

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import GetObjectRequestTypeDef

CHUNK = 1024 * 1024
"""How much of a body or a file is read at a time."""

MAX_KEY_BYTES = 1024  # S3's maximum key length
_DELETE_BATCH = 1000  # DeleteObjects' maximum

AWS_ERRORS = (ClientError, BotoCoreError)
"""What a failed S3 request raises."""


class Deletion(NamedTuple):
    """What deleting objects did: the keys deleted, the requests made, and why the others were not."""

    deleted: set[str]
    requests: int
    failures: list[str]


class BackupStore:
    """One user's objects and manifest in the data bucket, addressed by manifest key."""

    def __init__(self, s3_client: S3Client, bucket: str, user_id: str) -> None:
        if not user_id or "/" in user_id or "\x00" in user_id or user_id in (".", ".."):
            raise ValueError("user id cannot be used in an S3 key")
        self._s3 = s3_client
        self._bucket = bucket
        self.prefix = f"users/{user_id}/"

    @property
    def manifest_key(self) -> str:
        """The S3 key of this user's manifest."""
        return self.prefix + "manifest.json"

    def read_manifest(self) -> dict[str, Any] | None:
        """The files the manifest lists, entries unchecked; None if there is no manifest (a fresh user)."""
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=self.manifest_key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return parse_manifest(response["Body"].read(), self.manifest_key)

    def write_manifest(self, files: dict[str, Entry]) -> None:
        """Replace the manifest with one listing `files`."""
        self._s3.put_object(
            Bucket=self._bucket,
            Key=self.manifest_key,
            Body=serialise_manifest(files, time.time()),
            ContentType="application/json",
        )

    def get(self, key: str, version_id: str | None) -> StreamingBody:
        """The streaming body of one version of a file (the latest if the entry has no version id)."""
        request: GetObjectRequestTypeDef = {"Bucket": self._bucket, "Key": self.prefix + key}
        if version_id is not None and version_id != "null":
            request["VersionId"] = version_id
        return self._s3.get_object(**request)["Body"]

    def put(self, key: str, body: bytes | IO[bytes]) -> str | None:
        """Upload one file; the version id S3 stored it as (None if the bucket is not versioned)."""
        response = self._s3.put_object(Bucket=self._bucket, Key=self.prefix + key, Body=body)
        version_id: str | None = response.get("VersionId")
        return version_id

    def delete(self, keys: list[str]) -> Deletion:
        """Delete the objects of vanished files, up to 1,000 per request (versioning keeps them)."""
        deleted: set[str] = set()
        failures: list[str] = []
        requests = 0
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            requests += 1
            try:
                response = self._s3.delete_objects(
                    Bucket=self._bucket,
                    Delete={"Objects": [{"Key": self.prefix + key} for key in batch], "Quiet": True},
                )
            except AWS_ERRORS as exc:
                failures += [f"{key}: delete failed ({aws_error(exc)})" for key in batch]
                continue
            errors = {
                e.get("Key", "")[len(self.prefix) :]: e.get("Code", "") for e in response.get("Errors", [])
            }
            failures += [f"{key}: delete failed ({code})" for key, code in errors.items()]
            deleted.update(key for key in batch if key not in errors)
        return Deletion(deleted, requests, failures)


def aws_error(exc: Exception) -> str:
    """The short name of a failed request's error, as the reports show it."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "error"))
    return type(exc).__name__
