"""Deleting many objects from an S3 bucket, as the operator scripts do (publishing, destroying)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from scripts.aws_errors import Failure, aws_errors

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

DELETE_BATCH = 1000
"""The most keys one DeleteObjects call accepts."""


def delete_objects(
    s3: S3Client, bucket: str, objects: Sequence[ObjectIdentifierTypeDef], *, hint: str
) -> None:
    """Delete the objects (a version each, when one is named), a thousand per request; Failure naming the
    first that would not go, with `hint` (what the user's situation is, what to do)."""
    with aws_errors(hint=hint):
        for start in range(0, len(objects), DELETE_BATCH):
            batch = list(objects[start : start + DELETE_BATCH])
            result = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            errors = result.get("Errors") or []
            if errors:
                first = errors[0]
                raise Failure(
                    f"AWS DeleteObjects failed for {len(errors)} objects, e.g. {first.get('Key')}: "
                    f"{first.get('Code')} ({hint})"
                )
