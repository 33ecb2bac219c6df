"""What a route needs from the request: who is calling, the control plane, and checked parameters."""

from __future__ import annotations

import re
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver, BaseRouter, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.utilities.data_classes.api_gateway_proxy_event import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

from serverless_openclaw import protocol, untrusted
from serverless_openclaw.api.errors import BadRequest, PayloadTooLarge, Unauthorized
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.conversations import InvalidCursor

MAX_BODY_BYTES = 64 * 1024
"""Largest request body accepted (413 above)."""
PAGE_LIMIT_RANGE = (1, 100)
DEFAULT_PAGE_LIMIT = 50
PLANE_KEY = "plane"
"""Request-context key under which the handler hands the routes its ControlPlane."""

_MAX_CURSOR_CHARS = 1024
_LIMIT = re.compile(r"[0-9]{1,4}")


def provide_plane(resolver: ApiGatewayResolver, plane: ControlPlane) -> None:
    """Hand this request's routes their ControlPlane (the resolver clears its context after each request)."""
    resolver.append_context(**{PLANE_KEY: plane})  # type: ignore[no-untyped-call]  # unannotated upstream


def control_plane(router: BaseRouter) -> ControlPlane:
    """The ControlPlane the handler put in the request context."""
    plane = router.context.get(PLANE_KEY)
    if not isinstance(plane, ControlPlane):
        raise RuntimeError("the handler did not put a ControlPlane in the request context")
    return plane


def caller_id(event: BaseProxyEvent) -> str:
    """The Cognito `sub` that API Gateway's JWT authorizer verified; Unauthorized when there is none."""
    sub: Any = None
    if isinstance(event, APIGatewayProxyEventV2):
        sub = event.request_context.authorizer.jwt_claim.get("sub")
    if not isinstance(sub, str) or not sub.strip():
        raise Unauthorized()
    return sub


def check_body_size(event: BaseProxyEvent) -> None:
    """Refuse a body over MAX_BODY_BYTES before anything parses it."""
    body = event.body
    if not body:
        return
    # Base64 carries 3 bytes per 4 characters; no need to decode a body only to refuse it.
    size = len(body) * 3 // 4 if event.is_base64_encoded else len(body.encode("utf-8", "surrogatepass"))
    if size > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The request body is larger than {MAX_BODY_BYTES // 1024} KiB.")


def json_object(event: BaseProxyEvent) -> dict[str, Any]:
    """The request body as a JSON object; BadRequest when it is missing, malformed or not an object.

    Its size was checked by `guard`, which runs before every route (and again by the parser, on the
    decoded body).
    """
    try:
        text = event.decoded_body
        data = untrusted.parse_json(text, max_bytes=MAX_BODY_BYTES) if text else None
    except untrusted.InputTooLarge:
        raise PayloadTooLarge(f"The request body is larger than {MAX_BODY_BYTES // 1024} KiB.") from None
    except ValueError as exc:  # bad base64 and bad UTF-8 are ValueErrors too
        reason = exc.reason if isinstance(exc, untrusted.BadInput) else "not valid JSON"
        raise BadRequest(f"The request body is not acceptable JSON: {reason}.") from None
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    return data


def page_params(event: BaseProxyEvent) -> tuple[int, str | None]:
    """`limit` (1–100, default 50) and `cursor` from the query string."""
    params = event.query_string_parameters or {}
    raw_limit = params.get("limit")
    limit = DEFAULT_PAGE_LIMIT
    low, high = PAGE_LIMIT_RANGE
    if raw_limit:
        if not _LIMIT.fullmatch(raw_limit) or not low <= int(raw_limit) <= high:
            raise BadRequest(f"limit must be a whole number from {low} to {high}.")
        limit = int(raw_limit)
    cursor = params.get("cursor") or None
    if cursor is not None and len(cursor) > _MAX_CURSOR_CHARS:
        raise InvalidCursor()
    return limit, cursor


def identifier(value: str, name: str) -> str:
    """A path id checked against protocol.IDENTIFIER (safe inside a sort key); BadRequest otherwise."""
    if not protocol.is_identifier(value):
        raise BadRequest(f"{name} must be 1-64 letters, digits or . _ : - characters.")
    return value


def guard(app: ApiGatewayResolver, next_middleware: NextMiddleware) -> Response[Any]:
    """Before any route (unknown ones too): a verified caller (401), then a body within the limit (413)."""
    caller_id(app.current_event)
    check_body_size(app.current_event)
    return next_middleware(app)
