"""Which model a task runs: the user's setting when this task can run it, else the stack's default."""

from __future__ import annotations

from collections.abc import Callable

from bridge.config import DEFAULT_MODELS, BridgeConfig
from bridge.openclaw_config import ENDPOINT_PROVIDERS, ModelChoice
from bridge.secrets import API_KEY_PARAMETERS
from serverless_openclaw.observability import logger
from serverless_openclaw.settings import SUPPORTED_PROVIDERS


def choose_model(
    cfg: BridgeConfig, setting: object, model_keys: Callable[[str], dict[str, str]]
) -> tuple[ModelChoice, dict[str, str]]:
    """The model choice and its API key as {ENV_NAME: value} (read with `model_keys(provider)`).

    `setting` is the user's `model` setting ("provider/model id"); it is ignored, with a warning, when it
    names a provider this task cannot run (unknown, or an endpoint provider without a base URL).
    """
    provider, model_id = cfg.model_provider, cfg.model_id
    if isinstance(setting, str) and "/" in setting:
        wanted, wanted_model = setting.split("/", 1)
        needs_url = wanted in ENDPOINT_PROVIDERS and not cfg.model_base_url
        if wanted in SUPPORTED_PROVIDERS and not needs_url:
            provider, model_id = wanted, wanted_model
        else:
            logger.warning("user's model setting cannot be used here, using the default", setting=setting)
    api_keys = model_keys(provider)
    key_env = API_KEY_PARAMETERS.get(provider, (None, None))[1]
    choice = ModelChoice(
        provider=provider,
        model_id=model_id or DEFAULT_MODELS[provider],
        base_url=cfg.model_base_url if provider in ENDPOINT_PROVIDERS else None,
        # Only a key that exists is referenced: an unset ${VAR} in openclaw.json is an error there
        # (a keyless openai-compatible endpoint, such as a local one, needs none).
        api_key_env=key_env if key_env in api_keys else None,
    )
    logger.info("model chosen", provider=provider, model=choice.model_id, key_present=bool(api_keys))
    return choice, api_keys
