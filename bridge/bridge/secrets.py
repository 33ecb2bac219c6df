"""The person's secrets (model API keys) from SSM SecureString parameters under the stack's prefix."""

from __future__ import annotations

from typing import TYPE_CHECKING

from serverless_openclaw.aws.parameters import read_secure
from serverless_openclaw.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

API_KEY_PARAMETERS = {
    "anthropic": ("anthropic-api-key", "ANTHROPIC_API_KEY"),
    "openai": ("openai-api-key", "OPENAI_API_KEY"),
    "openai-compatible": ("openai-compatible-api-key", "OPENAI_COMPATIBLE_API_KEY"),
}
"""provider → (parameter name under SECRETS_PREFIX, environment variable OpenClaw's config refers to)."""


def model_secrets(ssm: SSMClient, prefix: str, provider: str) -> dict[str, str]:
    """The API key the provider needs, as {ENV_NAME: value}; empty for offline and keyless endpoints."""
    entry = API_KEY_PARAMETERS.get(provider)
    if entry is None or not prefix:
        return {}
    parameter, env_name = entry
    value = read_secure(ssm, f"{prefix}/{parameter}")
    if value is None:
        logger.warning("model API key not configured", parameter=f"{prefix}/{parameter}")
        return {}
    return {env_name: value}
