"""Telegram's rows in the Settings table: links to web accounts, one-time link codes, and the bot's memory.

None of these sort keys begins with `SETTING#`, so `/api/settings` never lists them:

- `USER#{sub}` / `TELEGRAM#LINK`: the web user's linked Telegram account (`telegramUserId`, `chatId`);
- `USER#telegram:{id}` / `TELEGRAM#LINKED-TO`: the reverse, whose agent a Telegram user's traffic reaches;
- `LINKCODE#{code}` / `LINKCODE`: an unused one-time code (`userId`, `expiresAt`), redeemed by a
  conditional delete;
- `USER#{sub}` / `TELEGRAM#CODE`: the web user's outstanding code, so a new one retires it;
- `USER#telegram:{id}` / `TELEGRAM#LINK-ATTEMPTS`: failed `/link` attempts in the current window;
- `USER#telegram:{id}` / `TELEGRAM#REFUSED`: when a stranger was last told how to link;
- `USER#{user}` / `TELEGRAM#CONVERSATION`: where Telegram messages go now (`/new` replaces it).

Every expiring row also carries `ttl`, but TTL deletion is lazy: expiry is always checked explicitly.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from serverless_openclaw.aws.clients import client
from serverless_openclaw.store import codec
from serverless_openclaw.store.conditions import condition_failed
from serverless_openclaw.store.ids import new_id
from serverless_openclaw.telegram_links import (
    CODE_ALPHABET,
    CODE_LENGTH,
    CODE_TTL_SECONDS,
    LINK_FAILURE_WINDOW_SECONDS,
    MAX_LINK_FAILURES,
    REFUSAL_QUIET_SECONDS,
    LinkCode,
    Redeemed,
    TelegramAccount,
    TelegramLink,
    normalise_code,
    telegram_user_id,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        PutItemInputTypeDef,
        TransactWriteItemTypeDef,
    )


def _key(pk: str, sk: str) -> dict[str, AttributeValueTypeDef]:
    return {"PK": {"S": pk}, "SK": {"S": sk}}


class TelegramLinkStore:
    """Links, codes and the bot's per-user memory, in the Settings table."""

    def __init__(self, table: str) -> None:
        self.table = table

    # ------------------------------------------------------------------------------------ reads

    def _put(self, item: dict[str, Any], condition: str | None = None, **values: Any) -> bool:
        """Put a row (if `condition` holds, with `:name` values); False when the condition failed."""
        request: PutItemInputTypeDef = {"TableName": self.table, "Item": codec.dump(item)}
        if condition:
            request["ConditionExpression"] = condition
        if values:
            request["ExpressionAttributeValues"] = codec.values({f":{k}": v for k, v in values.items()})
        try:
            client("dynamodb").put_item(**request)
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        resp = client("dynamodb").get_item(TableName=self.table, Key=_key(pk, sk), ConsistentRead=True)
        return codec.load(resp.get("Item"))

    def linked_user(self, telegram_id: int) -> str | None:
        """The web user a Telegram user is linked to, if any."""
        row = self._get(f"USER#{telegram_user_id(telegram_id)}", "TELEGRAM#LINKED-TO")
        user_id = row.get("userId") if row else None
        return user_id if isinstance(user_id, str) and user_id else None

    def link_of(self, user_id: str) -> TelegramLink | None:
        """The web user's linked Telegram account, if any."""
        row = self._get(f"USER#{user_id}", "TELEGRAM#LINK")
        if not row:
            return None
        return TelegramLink(
            user_id=user_id,
            telegram_user_id=int(row["telegramUserId"]),
            chat_id=int(row.get("chatId", row["telegramUserId"])),
            username=row.get("username"),
            first_name=row.get("firstName"),
            linked_at=float(row.get("linkedAt", 0)),
        )

    def pending_code(self, user_id: str, now: float) -> LinkCode | None:
        """The web user's outstanding code while it is still valid."""
        row = self._get(f"USER#{user_id}", "TELEGRAM#CODE")
        if not row or float(row.get("expiresAt", 0)) <= now:
            return None
        return LinkCode(code=str(row["code"]), expires_at=float(row["expiresAt"]))

    # ------------------------------------------------------------------------------------ codes

    def new_code(self, user_id: str, now: float) -> LinkCode:
        """Issue a one-time code for the web user; their previous unused code stops working."""
        previous = self._get(f"USER#{user_id}", "TELEGRAM#CODE")
        expires_at = now + CODE_TTL_SECONDS
        for _ in range(3):
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            items: list[TransactWriteItemTypeDef] = [
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": codec.dump(
                            {
                                "PK": f"LINKCODE#{code}",
                                "SK": "LINKCODE",
                                "userId": user_id,
                                "expiresAt": expires_at,
                                "ttl": int(expires_at) + 60,
                            }
                        ),
                        # A collision (1 in 6.5e11 per live code) must never hand over another user's code.
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                },
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": codec.dump(
                            {
                                "PK": f"USER#{user_id}",
                                "SK": "TELEGRAM#CODE",
                                "code": code,
                                "expiresAt": expires_at,
                                "ttl": int(expires_at) + 60,
                            }
                        ),
                    }
                },
            ]
            old = previous.get("code") if previous else None
            if isinstance(old, str) and old != code:
                items.append(
                    {
                        "Delete": {
                            "TableName": self.table,
                            "Key": _key(f"LINKCODE#{old}", "LINKCODE"),
                            "ConditionExpression": "attribute_not_exists(PK) OR userId = :me",
                            "ExpressionAttributeValues": codec.values({":me": user_id}),
                        }
                    }
                )
            try:
                client("dynamodb").transact_write_items(TransactItems=items)
            except ClientError as exc:
                if condition_failed(exc):
                    continue
                raise
            return LinkCode(code=code, expires_at=expires_at)
        raise RuntimeError("could not issue a unique link code")

    # ------------------------------------------------------------------------------------ linking

    def failures(self, telegram_id: int, now: float) -> tuple[int, float]:
        """(failed attempts in the current window, when that window ends)."""
        row = self._get(f"USER#{telegram_user_id(telegram_id)}", "TELEGRAM#LINK-ATTEMPTS")
        if not row:
            return 0, now
        window_end = float(row.get("windowStart", 0)) + LINK_FAILURE_WINDOW_SECONDS
        if window_end <= now:
            return 0, now
        return int(row.get("failures", 0)), window_end

    def record_failure(self, telegram_id: int, now: float) -> int:
        """Count one wrong code; returns the failures in the current window (a new window starts at 1)."""
        pk, sk = f"USER#{telegram_user_id(telegram_id)}", "TELEGRAM#LINK-ATTEMPTS"
        try:
            resp = client("dynamodb").update_item(
                TableName=self.table,
                Key=_key(pk, sk),
                UpdateExpression="ADD failures :one",
                ConditionExpression="windowStart > :cutoff",
                ExpressionAttributeValues=codec.values(
                    {":one": 1, ":cutoff": now - LINK_FAILURE_WINDOW_SECONDS}
                ),
                ReturnValues="UPDATED_NEW",
            )
            return int((codec.load(resp["Attributes"]) or {}).get("failures", 1))
        except ClientError as exc:
            if not condition_failed(exc):
                raise
        window = {"failures": 1, "windowStart": now, "ttl": int(now) + LINK_FAILURE_WINDOW_SECONDS + 60}
        self._put({"PK": pk, "SK": sk, **window})
        return 1

    def redeem(self, code_text: str, account: TelegramAccount, now: float) -> Redeemed:
        """`/link CODE`: bind the Telegram account to the code's web user, consuming the code exactly once.

        A rate-limited Telegram user's codes are not even looked up; every wrong, expired or reused code
        counts as a failure.
        """
        failures, window_end = self.failures(account.telegram_user_id, now)
        if failures >= MAX_LINK_FAILURES:
            return Redeemed(refusal="rate_limited", retry_in_seconds=max(1, int(window_end - now + 0.999)))
        code = normalise_code(code_text)
        user_id = self._code_owner(code, now) if code is not None else None
        if code is None or user_id is None:
            return self._failed(account.telegram_user_id, now)
        try:
            client("dynamodb").transact_write_items(
                TransactItems=self._link_writes(code, user_id, account, now)
            )
        except ClientError as exc:
            if condition_failed(exc):
                # Redeemed (or replaced) by someone else in the meantime: this attempt used a dead code.
                return self._failed(account.telegram_user_id, now)
            raise
        return Redeemed(user_id=user_id)

    def _code_owner(self, code: str, now: float) -> str | None:
        """The web user an unused code was issued to; None when it is unknown or expired."""
        row = self._get(f"LINKCODE#{code}", "LINKCODE")
        user_id = row.get("userId") if row else None
        if not row or not isinstance(user_id, str) or float(row.get("expiresAt", 0)) <= now:
            return None
        return user_id

    def _link_writes(
        self, code: str, user_id: str, account: TelegramAccount, now: float
    ) -> list[TransactWriteItemTypeDef]:
        """One transaction: consume the code, link both ways, and undo the links this one replaces."""
        tg_user = telegram_user_id(account.telegram_user_id)
        previous_user = self.linked_user(account.telegram_user_id)
        previous_link = self.link_of(user_id)
        items: list[TransactWriteItemTypeDef] = [
            {
                # Single use: only one redemption can delete the row; a second finds it gone.
                "Delete": {
                    "TableName": self.table,
                    "Key": _key(f"LINKCODE#{code}", "LINKCODE"),
                    "ConditionExpression": "attribute_exists(PK) AND userId = :user AND expiresAt > :now",
                    "ExpressionAttributeValues": codec.values({":user": user_id, ":now": now}),
                }
            },
            {
                "Delete": {
                    "TableName": self.table,
                    "Key": _key(f"USER#{user_id}", "TELEGRAM#CODE"),
                    "ConditionExpression": "attribute_not_exists(PK) OR code = :code",
                    "ExpressionAttributeValues": codec.values({":code": code}),
                }
            },
            {
                "Put": {
                    "TableName": self.table,
                    "Item": codec.dump(
                        {
                            "PK": f"USER#{user_id}",
                            "SK": "TELEGRAM#LINK",
                            "telegramUserId": account.telegram_user_id,
                            "chatId": account.chat_id,
                            "username": account.username,
                            "firstName": account.first_name,
                            "linkedAt": now,
                        }
                    ),
                }
            },
            {
                "Put": {
                    "TableName": self.table,
                    "Item": codec.dump(
                        {
                            "PK": f"USER#{tg_user}",
                            "SK": "TELEGRAM#LINKED-TO",
                            "userId": user_id,
                            "linkedAt": now,
                        }
                    ),
                }
            },
            {"Delete": {"TableName": self.table, "Key": _key(f"USER#{tg_user}", "TELEGRAM#LINK-ATTEMPTS")}},
        ]
        if previous_link and previous_link.telegram_user_id != account.telegram_user_id:
            # The web user linked another Telegram account before: that one no longer reaches this agent.
            items.append(
                {
                    "Delete": {
                        "TableName": self.table,
                        "Key": _key(
                            f"USER#{telegram_user_id(previous_link.telegram_user_id)}", "TELEGRAM#LINKED-TO"
                        ),
                        "ConditionExpression": "attribute_not_exists(PK) OR userId = :user",
                        "ExpressionAttributeValues": codec.values({":user": user_id}),
                    }
                }
            )
        if previous_user and previous_user != user_id:
            # This Telegram account moves to the new web user: the old one's settings stop showing it.
            items.append(
                {
                    "Delete": {
                        "TableName": self.table,
                        "Key": _key(f"USER#{previous_user}", "TELEGRAM#LINK"),
                        "ConditionExpression": "attribute_not_exists(PK) OR telegramUserId = :tg",
                        "ExpressionAttributeValues": codec.values({":tg": account.telegram_user_id}),
                    }
                }
            )
        return items

    def _failed(self, telegram_id: int, now: float) -> Redeemed:
        failures = self.record_failure(telegram_id, now)
        if failures >= MAX_LINK_FAILURES:
            return Redeemed(refusal="rate_limited", retry_in_seconds=LINK_FAILURE_WINDOW_SECONDS)
        return Redeemed(refusal="invalid")

    def unlink(self, user_id: str) -> TelegramLink | None:
        """Remove the web user's link (both directions); the removed link, or None when there was none."""
        link = self.link_of(user_id)
        if link is None:
            return None
        tg_user = telegram_user_id(link.telegram_user_id)
        try:
            client("dynamodb").transact_write_items(
                TransactItems=[
                    {
                        "Delete": {
                            "TableName": self.table,
                            "Key": _key(f"USER#{user_id}", "TELEGRAM#LINK"),
                            "ConditionExpression": "telegramUserId = :tg",
                            "ExpressionAttributeValues": codec.values({":tg": link.telegram_user_id}),
                        }
                    },
                    {
                        "Delete": {
                            "TableName": self.table,
                            "Key": _key(f"USER#{tg_user}", "TELEGRAM#LINKED-TO"),
                            "ConditionExpression": "attribute_not_exists(PK) OR userId = :user",
                            "ExpressionAttributeValues": codec.values({":user": user_id}),
                        }
                    },
                ]
            )
        except ClientError as exc:
            if condition_failed(exc):
                return None  # changed meanwhile (unlinked or relinked elsewhere): nothing of ours to remove
            raise
        return link

    # ------------------------------------------------------------------------------------ bot memory

    def should_refuse(self, telegram_id: int, now: float) -> bool:
        """True (and remembered) when a stranger has not been told how to link within the quiet period."""
        return self._put(
            {
                "PK": f"USER#{telegram_user_id(telegram_id)}",
                "SK": "TELEGRAM#REFUSED",
                "refusedAt": now,
                "ttl": int(now) + REFUSAL_QUIET_SECONDS + 60,
            },
            "attribute_not_exists(PK) OR refusedAt <= :cutoff",
            cutoff=now - REFUSAL_QUIET_SECONDS,
        )

    def conversation(self, user_id: str, now: float) -> str:
        """The conversation Telegram messages go to now; the first message (or `/new`) creates one."""
        row = self._get(f"USER#{user_id}", "TELEGRAM#CONVERSATION")
        current = row.get("conversationId") if row else None
        if isinstance(current, str) and current:
            return current
        fresh = new_id()
        row = {"PK": f"USER#{user_id}", "SK": "TELEGRAM#CONVERSATION", "conversationId": fresh, "at": now}
        if not self._put(row, "attribute_not_exists(PK)"):
            # Two messages raced to open the first conversation: both go to the winner's.
            return self.conversation(user_id, now)
        return fresh

    def new_conversation(self, user_id: str, now: float) -> str:
        """`/new`: later Telegram messages go to a fresh conversation."""
        fresh = new_id()
        self._put(
            {"PK": f"USER#{user_id}", "SK": "TELEGRAM#CONVERSATION", "conversationId": fresh, "at": now}
        )
        return fresh
