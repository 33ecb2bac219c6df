"""How the operator scripts report failures: one line on stderr, exit 2 for usage, 1 for a failed call.

boto3's exceptions become `UsageError` (the script cannot run as configured: no region, no such stack) or
`Failure` (AWS refused or could not be reached). Values a caller names as sensitive are blanked out of
AWS's messages, which may quote a request's parameters.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)

SAFE_BOTOCORE_ERRORS = (
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
)
"""botocore errors whose message names only endpoints and settings (a validation error may quote a value)."""


class UsageError(Exception):
    """The command cannot run as configured: one line for stderr, exit code 2."""


class Failure(Exception):
    """AWS (or Telegram) failed: one line for stderr, already free of secrets, exit code 1."""


@contextmanager
def aws_errors(*sensitive: str, hint: str = "") -> Iterator[None]:
    """Turn boto3's exceptions into one printable line, `sensitive` values blanked, `hint` appended."""
    suffix = f" ({hint})" if hint else ""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code", "Unknown")), redact(str(error.get("Message", "")), sensitive)
        if exc.operation_name == "DescribeStacks" and "does not exist" in message:
            raise UsageError(message) from None
        raise Failure(f"AWS {exc.operation_name} failed: {code}: {message}{suffix}") from None
    except NoRegionError:
        raise UsageError("no AWS region: pass --region or set AWS_REGION") from None
    except SAFE_BOTOCORE_ERRORS as exc:
        raise Failure(f"AWS failed: {redact(str(exc), sensitive)}{suffix}") from None
    except BotoCoreError as exc:
        raise Failure(f"AWS failed: {type(exc).__name__}{suffix}") from None


def exit_code(run: Callable[[], object]) -> int:
    """Run a script's work: 0, or 2 (UsageError), 1 (Failure), 130 (Ctrl-C) with the reason on stderr."""
    try:
        run()
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Failure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def redact(text: str, sensitive: Sequence[str]) -> str:
    """`text` with every non-empty sensitive value replaced by ***."""
    for value in sensitive:
        if value:
            text = text.replace(value, "***")
    return text
