"""`$disconnect`: forget a closed WebSocket connection (and a bridge's agent link if it is the current one).

Apart from connect.py so that `$disconnect` does not pay PyJWT's import on its cold start.
"""

from __future__ import annotations

from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.observability import logger


def close_connection(cp: ControlPlane, connection_id: str) -> None:
    """Forget a closed connection (and the agent link if it was the current one); unknown ids are fine."""
    if not connection_id:
        return
    removed = cp.connections.delete(connection_id)
    if removed is None:
        logger.info("unknown connection closed", connection_id=connection_id)
        return
    if removed.kind == "agent":
        # A bridge that reconnected already owns a newer connection; only the current one is cleared.
        current = cp.task_state.detach_agent(removed.user_id, connection_id)
        logger.info(
            "agent disconnected",
            connection_id=connection_id,
            user_id=removed.user_id,
            task_arn=removed.task_arn,
            was_current=current,
        )
    else:
        logger.info("client disconnected", connection_id=connection_id, user_id=removed.user_id)
