"""`/api/settings`: the caller's settings (model, idle timeout, time zone, wake on intent) merged over the
defaults, with what the dialog needs to explain them (providers, the cost of a wake)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Router

from serverless_openclaw import settings as user_settings
from serverless_openclaw import task_prices
from serverless_openclaw.api.request import caller_id, control_plane, json_object
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.observability import count, logger

router = Router()  # type: ignore[no-untyped-call]  # Powertools leaves Router.__init__ unannotated


def effective_settings(cp: ControlPlane, user_id: str) -> dict[str, Any]:
    """Stored values over the stack defaults (what the agent runs with), plus the supported providers."""
    merged = user_settings.defaults(cp.cfg.lifecycle.idle_timeout_minutes)
    stored = cp.settings.get_all(user_id)
    # Only known settings: other rows of the partition (links, codes) are not the client's business here.
    merged.update({key: val for key, val in stored.items() if key in merged})
    merged["supportedProviders"] = list(user_settings.SUPPORTED_PROVIDERS)
    launch = cp.cfg.launch
    # What one wake nobody writes after costs: the task runs for the warm idle timeout, then stops.
    merged["wakeOnIntentCost"] = task_prices.running_cost(
        launch.cpu_units, launch.memory_mib, cp.cfg.lifecycle.warm_idle_timeout_minutes
    ).as_json()
    return merged


@router.get("/settings")
def get_settings() -> dict[str, Any]:
    """The caller's effective settings."""
    return effective_settings(control_plane(router), caller_id(router.current_event))


@router.put("/settings")
def put_settings() -> dict[str, Any]:
    """Validate and store a settings change (all or nothing), then return the effective settings."""
    cp, user_id = control_plane(router), caller_id(router.current_event)
    changes = user_settings.validate(json_object(router.current_event))
    cp.settings.put(user_id, changes, cp.clock())
    count("SettingsChanged")
    logger.info("settings changed", user_id=user_id, keys=sorted(changes))
    return effective_settings(cp, user_id)
