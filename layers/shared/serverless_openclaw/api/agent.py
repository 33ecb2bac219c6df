"""`/api/status` and `/api/agent/{start,stop}`: the caller's own agent task, and nobody else's."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Response, Router

from serverless_openclaw import routing
from serverless_openclaw.api.errors import json_response
from serverless_openclaw.api.request import caller_id, control_plane
from serverless_openclaw.observability import count, logger

router = Router()  # type: ignore[no-untyped-call]  # Powertools leaves Router.__init__ unannotated


@router.get("/status")
def get_status() -> dict[str, Any]:
    """The caller's agent status frame, with the last start error and attempt count when there are any."""
    cp, user_id = control_plane(router), caller_id(router.current_event)
    state = cp.task_state.get(user_id, consistent=False)
    frame: dict[str, Any] = dict(routing.status_frame(cp, user_id, state))
    # Picked field by field: the row also holds the task ARN and the agent token hash, never shown.
    if state.last_error:
        frame["lastError"] = state.last_error
    if state.start_attempts:
        frame["startAttempts"] = state.start_attempts
    return frame


@router.post("/agent/start")
def start_agent() -> Response[dict[str, Any]]:
    """Start the caller's agent unless one is already starting or running: 202 with what happened."""
    cp, user_id = control_plane(router), caller_id(router.current_event)
    count("AgentStartRequested")
    outcome = routing.request_start(cp, user_id)
    logger.info("agent start requested", user_id=user_id, started=outcome.started, status=outcome.status)
    body: dict[str, Any] = {"status": outcome.status, "started": outcome.started}
    if outcome.error:
        # StartError reasons are written for the user (they are pushed to the chat as well).
        body["error"] = outcome.error
    return json_response(HTTPStatus.ACCEPTED, body)


@router.post("/agent/stop")
def stop_agent() -> Response[dict[str, Any]]:
    """Stop the caller's agent gracefully: 202 with the status it is now in."""
    cp, user_id = control_plane(router), caller_id(router.current_event)
    count("AgentStopRequested")
    status = routing.request_stop(cp, user_id)
    logger.info("agent stop requested", user_id=user_id, status=status)
    return json_response(HTTPStatus.ACCEPTED, {"status": status})
