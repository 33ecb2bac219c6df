"""SSM SecureString parameters: the person's secrets (model API keys, the bot token, the webhook secret)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError


def read_secure(ssm: Any, name: str) -> str | None:
    """A SecureString's decrypted value; None when it was never stored (or is empty)."""
    try:
        response = ssm.get_parameter(Name=name, WithDecryption=True)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
            return None
        raise
    return str(response["Parameter"]["Value"]) or None
