"""`/api/settings`: the caller's settings (model, idle timeout, time zone, wake on intent, warm windows)
merged over the defaults, with what the dialog needs to explain them (providers, the cost of a wake);
`/api/settings/warm-windows/cost`: what a set of warm windows would cost a month, before saving."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Router

from serverless_openclaw import prices, wake, warm_windows
from serverless_openclaw import settings as user_settings
from serverless_openclaw.api.errors import SchedulesNotWritten
from serverless_openclaw.api.request import caller_id, control_plane, json_object
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.observability import count, logger
from serverless_openclaw.wake_schedules import Wanted

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
    merged["wakeOnIntentCost"] = prices.running_cost(
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
    effective = effective_settings(cp, user_id)
    if "warmWindows" in changes or "timezone" in changes:
        write_window_schedules(cp, user_id, effective)
    return effective


def write_window_schedules(cp: ControlPlane, user_id: str, effective: dict[str, Any]) -> list[str]:
    """Replace the user's warm-window schedules with one per window start, on the user's clocks."""
    windows, zone = warm_windows.for_user(effective)
    wanted = [Wanted(expression, zone) for expression in warm_windows.cron_expressions(windows)]
    if cp.schedules is None:
        raise RuntimeError("this function has no schedule writer (ControlPlane.schedules)")
    try:
        names = cp.schedules.replace(user_id, wake.WINDOW, wanted)
    except Exception as exc:
        # The settings are stored and are the truth; saving again brings the schedules in line.
        logger.exception("warm-window schedules not written", user_id=user_id)
        raise SchedulesNotWritten(
            "Your settings were saved, but the schedule that starts your agent for its warm windows could "
            "not be updated. Save again in a minute."
        ) from exc
    logger.info("warm-window schedules written", user_id=user_id, schedules=len(names))
    return names


@router.post("/settings/warm-windows/cost")
def warm_windows_cost() -> dict[str, Any]:
    """What the windows in the body would cost a month (nothing is stored); 400 naming each bad field."""
    cp = control_plane(router)
    value = json_object(router.current_event).get("warmWindows")
    found = warm_windows.problems(value)
    if found:
        raise user_settings.InvalidSettings(found)
    launch = cp.cfg.launch
    return warm_windows.monthly_cost(
        warm_windows.parse(value), warm_windows.task_size(launch.cpu_units, launch.memory_mib)
    )
