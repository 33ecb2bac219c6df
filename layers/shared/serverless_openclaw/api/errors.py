"""Refusals of the HTTP API and the one place where every error becomes an HTTP response.

A client only ever sees a stable `error` code and, for refusals we phrase ourselves, a readable
`message`; never the text of an unexpected exception (it may carry table names, ARNs or user data).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import content_types
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver, Response

from serverless_openclaw.conversations import InvalidCursor
from serverless_openclaw.observability import logger
from serverless_openclaw.settings import InvalidSettings


class ApiError(Exception):
    """A request the API refuses: `status` is the HTTP status, `code` the stable `error` for the client."""

    status: HTTPStatus = HTTPStatus.BAD_REQUEST
    code: str = "bad_request"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.code)
        self.message = message

    def body(self) -> dict[str, Any]:
        """The JSON body of the refusal."""
        body: dict[str, Any] = {"error": self.code}
        if self.message:
            body["message"] = self.message
        return body


class BadRequest(ApiError):
    """Malformed JSON, a body that is not an object, a bad query parameter or path id."""


class Unauthorized(ApiError):
    """No verified caller identity on the request."""

    status = HTTPStatus.UNAUTHORIZED
    code = "unauthorized"


class NotFound(ApiError):
    """Nothing of that name in the caller's own data (another user's data is "not found" too)."""

    status = HTTPStatus.NOT_FOUND
    code = "not_found"


class PayloadTooLarge(ApiError):
    """The request body is over the limit."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    code = "too_large"


class SchedulesNotWritten(ApiError):
    """Settings were saved but the schedules that start the agent could not be brought in line."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "schedules_not_written"


def json_response(status: int, body: dict[str, Any]) -> Response[dict[str, Any]]:
    """A JSON response with the given status."""
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def _refused(exc: ApiError) -> Response[dict[str, Any]]:
    return json_response(exc.status, exc.body())


def _invalid_settings(exc: InvalidSettings) -> Response[dict[str, Any]]:
    # The reasons are ours (settings.validate), written for the user, so they may go back verbatim.
    return json_response(HTTPStatus.BAD_REQUEST, {"error": "invalid_settings", "fields": exc.problems})


def _invalid_cursor(_: InvalidCursor) -> Response[dict[str, Any]]:
    return json_response(
        HTTPStatus.BAD_REQUEST,
        {"error": "invalid_cursor", "message": "The cursor was not issued for this listing."},
    )


def _no_route(_: Exception) -> Response[dict[str, Any]]:
    return json_response(HTTPStatus.NOT_FOUND, {"error": "not_found"})


def _unexpected(exc: Exception) -> Response[dict[str, Any]]:
    logger.exception("unhandled error in the HTTP API", error_type=type(exc).__name__)
    return json_response(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal"})


def register(app: ApiGatewayResolver) -> None:
    """Install the error → HTTP mapping on the resolver (refusals, 404 for unknown routes, 500 otherwise)."""
    app.exception_handler(ApiError)(_refused)
    app.exception_handler(InvalidSettings)(_invalid_settings)
    app.exception_handler(InvalidCursor)(_invalid_cursor)
    app.not_found(_no_route)
    # Last resort: the most specific handler wins, so this only sees what nothing above claims.
    app.exception_handler(Exception)(_unexpected)
