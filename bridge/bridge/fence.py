"""Fencing: a bridge stops streaming, storing and delivering the moment the message it answers may no
longer be its own.

Two things make a message a bridge's own: its claim on the Inbox item (a lease, renewed during the run)
and TaskState naming its task (kept fresh by heartbeats). A bridge that froze (a stalled host, SIGSTOP)
or lost its link can wake up after the watchdog replaced it and another task claimed the message; it
must then go quiet instead of answering a second time.

Checking DynamoDB before every chunk would cost a call per chunk, so the fence remembers when each was
last *confirmed* (claim or renewal: until when the lease runs; heartbeat answered: when it was sent) and
trusts them while well inside their limits. Past that — exactly what a freeze produces, since the wall
clock jumps — it looks once at the truth before the next visible effect, and once it finds the message
lost it stays lost. The final write needs no look: it is one transaction conditioned on the claim and
on TaskState (`guards`), so even a bridge that slipped past the fast path cannot store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from serverless_openclaw.messages import InboxItem
from serverless_openclaw.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef


class ClaimRecords(Protocol):
    """The Inbox, as far as the fence needs it."""

    def renew(self, item: InboxItem, claimer: str, now: float, lease_seconds: int) -> bool:
        """Extend our lease; False if we no longer hold it."""
        ...


class TaskRecords(Protocol):
    """TaskState, as far as the fence needs it."""

    def names_task(self, user_id: str, task_arn: str) -> bool:
        """Whether the row still names this task."""
        ...

    def names_task_check(self, user_id: str, task_arn: str) -> TransactWriteItemTypeDef:
        """A transaction item that holds only while the row names this task."""
        ...


@dataclass
class Claim:
    """Our hold on one Inbox item while we answer it."""

    item: InboxItem
    expires_at: float
    lost: str | None = None
    """Why the item is no longer ours (`claim` or `task`), once the fence found out."""


class Fence:
    """Tells the Inbox loop whether it may still show, store or deliver anything for its current item."""

    def __init__(
        self,
        *,
        user_id: str,
        task_arn: str,
        inbox: ClaimRecords,
        task_state: TaskRecords,
        clock: Callable[[], float],
        lease_seconds: int,
        heartbeat_limit: float,
    ) -> None:
        self.user_id = user_id
        self.task_arn = task_arn
        self.inbox = inbox
        self.task_state = task_state
        self.clock = clock
        self.lease_seconds = lease_seconds
        # Trusted only well inside their limits: a lease renewed every third of it keeps two thirds, a
        # heartbeat sent every interval stays far below the staleness limit, and clocks may disagree a bit.
        self.lease_margin = lease_seconds / 4
        self.task_window = heartbeat_limit * 3 / 4
        self.task_confirmed_at: float | None = None
        self.superseded = False
        self.checks = 0
        """How many times the fence had to look at DynamoDB (for /status and the benchmark)."""
        self._lock = asyncio.Lock()

    def task_confirmed(self, at: float) -> None:
        """TaskState named this task as of `at` (a heartbeat sent then was accepted, or a write succeeded)."""
        if self.task_confirmed_at is None or at > self.task_confirmed_at:
            self.task_confirmed_at = at

    def task_lost(self) -> None:
        """TaskState no longer names this task: nothing of ours may reach the user any more."""
        self.superseded = True

    def claim(self, item: InboxItem) -> Claim:
        """Start guarding a freshly claimed item."""
        return Claim(item, item.claim_expires_at or self.clock() + self.lease_seconds)

    def renewed(self, claim: Claim, expires_at: float) -> None:
        """The lease was renewed until `expires_at`."""
        claim.expires_at = max(claim.expires_at, expires_at)

    def lose(self, claim: Claim, why: str) -> None:
        """Mark the item no longer ours; logged once."""
        if claim.lost is None:
            claim.lost = why
            logger.warning(
                "fenced: this bridge no longer answers the message", message_id=claim.item.message_id, why=why
            )

    def guards(self) -> list[TransactWriteItemTypeDef]:
        """Conditions the final write must also meet: TaskState still names this task."""
        return [self.task_state.names_task_check(self.user_id, self.task_arn)]

    def trusted(self, claim: Claim) -> bool:
        """Whether the last confirmations still vouch for the claim, with no call at all."""
        now = self.clock()
        return (
            claim.lost is None
            and not self.superseded
            and now < claim.expires_at - self.lease_margin
            and self.task_confirmed_at is not None
            and now - self.task_confirmed_at < self.task_window
        )

    async def holds(self, claim: Claim) -> bool:
        """Whether the item is still ours: free while recently confirmed, else one look at DynamoDB."""
        if self.trusted(claim):
            return True
        async with self._lock:
            if claim.lost is None and not self.trusted(claim):
                await self._verify(claim)
        return claim.lost is None

    async def _verify(self, claim: Claim) -> None:
        now = self.clock()
        if self.superseded:
            self.lose(claim, "task")
            return
        if self.task_confirmed_at is None or now - self.task_confirmed_at >= self.task_window:
            self.checks += 1
            if not await asyncio.to_thread(self.task_state.names_task, self.user_id, self.task_arn):
                self.task_lost()
                self.lose(claim, "task")
                return
            self.task_confirmed(now)
        if now >= claim.expires_at - self.lease_margin:
            # Renewing is the look: it succeeds only while the item is still claimed in our name.
            self.checks += 1
            if not await asyncio.to_thread(
                self.inbox.renew, claim.item, self.task_arn, now, self.lease_seconds
            ):
                self.lose(claim, "claim")
                return
            self.renewed(claim, now + self.lease_seconds)
