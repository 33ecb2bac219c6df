"""`/api/conversations`: the caller's conversation history, a page at a time, and deleting a conversation."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Response, Router

from serverless_openclaw.api.errors import NotFound
from serverless_openclaw.api.request import caller_id, control_plane, identifier, page_params
from serverless_openclaw.observability import count, logger

router = Router()  # type: ignore[no-untyped-call]  # Powertools leaves Router.__init__ unannotated


@router.get("/conversations")
def list_conversations() -> dict[str, Any]:
    """The caller's conversations, newest first: `{"items", "nextCursor"}`."""
    cp, user_id = control_plane(router), caller_id(router.current_event)
    limit, cursor = page_params(router.current_event)
    page = cp.conversations.conversations(user_id, limit, cursor)
    return {"items": page.items, "nextCursor": page.next_cursor}


@router.get("/conversations/<conversation_id>/messages")
def list_messages(conversation_id: str) -> dict[str, Any]:
    """Messages of one of the caller's conversations, newest first; 404 when it is not theirs."""
    cp, user_id = control_plane(router), caller_id(router.current_event)
    conversation_id = identifier(conversation_id, "conversation id")
    limit, cursor = page_params(router.current_event)
    # Looked up under the caller's partition only: another user's conversation simply does not exist here.
    if cp.conversations.get(user_id, conversation_id) is None:
        raise NotFound()
    page = cp.conversations.messages(user_id, conversation_id, limit, cursor)
    return {"items": page.items, "nextCursor": page.next_cursor}


@router.delete("/conversations/<conversation_id>")
def delete_conversation(conversation_id: str) -> Response[None]:
    """Delete one of the caller's conversations with all its messages: 204, or 404 when it is not theirs."""
    cp, user_id = control_plane(router), caller_id(router.current_event)
    conversation_id = identifier(conversation_id, "conversation id")
    if not cp.conversations.delete(user_id, conversation_id):
        raise NotFound()
    count("ConversationDeleted")
    logger.info("conversation deleted", user_id=user_id, conversation_id=conversation_id)
    return Response(status_code=HTTPStatus.NO_CONTENT)
