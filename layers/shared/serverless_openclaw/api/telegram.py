"""`/api/telegram/*`: linking the caller's web account to their Telegram account.

The web asks for a one-time code, the person sends `/link CODE` to the bot, and from then on their
Telegram messages reach the same agent, workspace and history. The caller can see and remove the link.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Response, Router

from serverless_openclaw.api.errors import NotFound, json_response
from serverless_openclaw.api.request import caller_id, control_plane
from serverless_openclaw.observability import count, logger

router = Router()  # type: ignore[no-untyped-call]  # Powertools leaves Router.__init__ unannotated


@router.post("/telegram/link-code")
def create_link_code() -> Response[dict[str, Any]]:
    """A one-time code (8 characters, 10 minutes, single use); the caller's previous one stops working."""
    cp, user_id = control_plane(router), caller_id(router.current_event)
    now = cp.clock()
    code = cp.telegram_links.new_code(user_id, now)
    count("TelegramLinkCodeIssued")
    logger.info("telegram link code issued", user_id=user_id)
    return json_response(
        HTTPStatus.CREATED,
        {
            "code": code.code,
            "expiresAt": code.expires_at,
            "expiresInSeconds": int(code.expires_at - now),
            "command": f"/link {code.code}",
        },
    )


@router.get("/telegram/link")
def get_link() -> dict[str, Any]:
    """Whether the caller is linked (and to which Telegram account), and any code still waiting to be used."""
    cp, user_id = control_plane(router), caller_id(router.current_event)
    link = cp.telegram_links.link_of(user_id)
    pending = cp.telegram_links.pending_code(user_id, cp.clock())
    body: dict[str, Any] = {"linked": link is not None}
    if link is not None:
        body.update(link.public())
    body["pendingCode"] = {"code": pending.code, "expiresAt": pending.expires_at} if pending else None
    return body


@router.delete("/telegram/link")
def delete_link() -> Response[None]:
    """Unlink the caller's Telegram account: 204, or 404 when there is no link."""
    cp, user_id = control_plane(router), caller_id(router.current_event)
    if cp.telegram_links.unlink(user_id) is None:
        raise NotFound("No Telegram account is linked.")
    count("TelegramUnlinked")
    logger.info("telegram account unlinked", user_id=user_id)
    return Response(status_code=HTTPStatus.NO_CONTENT)
