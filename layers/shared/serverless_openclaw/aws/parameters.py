"""SSM SecureString parameters: the person's secrets (model API keys, the bot token, the webhook secret)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient


def read_secure(ssm: SSMClient, name: str) -> str | None:
    """A SecureString's decrypted value; None when it was never stored (or is empty)."""
    try:
        response = ssm.get_parameter(Name=name, WithDecryption=True)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
            return None
        raise
    return str(response["Parameter"]["Value"]) or None
