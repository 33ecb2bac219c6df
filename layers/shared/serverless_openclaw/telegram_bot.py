"""The Telegram webhook (`POST /telegram`): who may talk to the agent, the bot's commands, and routing.

Telegram posts every update with the secret we registered in `X-Telegram-Bot-Api-Secret-Token`; anything
else gets 403 and writes nothing. An accepted update is answered with 200 quickly; Telegram redelivers
until it sees a 2xx, so every update is deduplicated on its `update_id` in the Idempotency table and a
redelivery never produces a second answer. A failure before anything was decided returns 500, so
Telegram's redelivery is the retry.

Text from a linked (or allowlisted) Telegram user goes through the same routing as the web (routing.py):
stored in Conversations and the Inbox first, then the agent is nudged or started. A stranger gets one
polite refusal that explains how to link, and nothing starts.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from serverless_openclaw import lifecycle, protocol, routing, untrusted
from serverless_openclaw.config import TelegramConfig
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.messages import IncomingMessage
from serverless_openclaw.observability import count, logger
from serverless_openclaw.telegram import BotAccess, CachedParameter, TelegramClient, TelegramError
from serverless_openclaw.telegram_links import (
    CODE_LENGTH,
    CODE_TTL_SECONDS,
    TelegramAccount,
    telegram_user_id,
)

SECRET_HEADER = "x-telegram-bot-api-secret-token"
MAX_UPDATE_BYTES = 256 * 1024
"""Telegram's updates are a few KB; anything near this is not from Telegram."""
MAX_TELEGRAM_ID = 2**52
"""Telegram's user and chat ids have at most 52 significant bits (Bot API, `User.id` and `Chat.id`).
Update ids get the same bound: they start "from a certain positive number", and refusing a real one
would block the bot, while anything within it is stored exactly."""
MAX_BOT_API_INTEGER = 2**31 - 1
"""Message ids are Bot API `Integer`s: 32-bit signed."""
SECRET_REFRESH_SECONDS = 30.0
"""A mismatching secret re-reads SSM at most this often (a rotation is picked up, a flood is not a DoS)."""

COMMANDS = ("start", "help", "status", "stop", "new", "link", "unlink", "wake")

HELP = (
    "I am your private OpenClaw agent. Write to me as you would in the web chat; the conversation shows "
    "up there too.\n\n"
    "/status - is your agent running?\n"
    "/wake - wake your agent now, so it is ready when you write (opening this chat does too)\n"
    "/stop - stop the reply being written\n"
    "/new - start a new conversation\n"
    "/unlink - disconnect this Telegram account from your web account\n"
    "/help - this message"
)
HOW_TO_LINK = (
    "Hello! This bot is a private AI agent, and this Telegram account is not linked to it yet.\n\n"
    'If it is yours: sign in to the web chat, open Settings, choose "Link Telegram", and send me the '
    f"code it shows: /link CODE (the code has {CODE_LENGTH} characters and works for "
    f"{CODE_TTL_SECONDS // 60} minutes)."
)


class WebhookError(Exception):
    """A request refused before any work: its HTTP status and a short reason (no details for attackers)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Update:
    """The one kind of update the bot acts on: a text message in a private chat."""

    update_id: int
    account: TelegramAccount
    message_id: int
    text: str


@dataclass
class TelegramBot:
    """Everything the webhook needs: the control plane (with the link store), the bot's configuration,
    its webhook secret and its client."""

    cp: ControlPlane
    config: TelegramConfig
    secret: CachedParameter
    bot: BotAccess
    clock: Callable[[], float] = time.time
    _secret_refreshed_at: float = -1e18

    @classmethod
    def from_plane(cls, cp: ControlPlane) -> TelegramBot:
        """Production wiring: the bot configured with the control plane, its secrets read from SSM."""
        config = cp.cfg.telegram
        return cls(
            cp=cp,
            config=config,
            secret=CachedParameter(config.secret_parameter),
            bot=BotAccess(config.token_parameter, config.api_base, attempts=3),
        )

    # ------------------------------------------------------------------------------------ request

    def handle(
        self, headers: Mapping[str, str], body: str | None, is_base64: bool = False
    ) -> tuple[int, dict[str, Any]]:
        """One webhook request → (HTTP status, JSON body). Raises only for failures Telegram should retry."""
        try:
            self.authenticate(headers)
            update = parse_update(_decoded(body, is_base64))
        except WebhookError as refused:
            count("TelegramRefused")
            logger.info("telegram webhook refused", status=refused.status, reason=refused.reason)
            return refused.status, {"error": refused.reason}
        if update is None:
            return 200, {"ok": True, "ignored": True}
        try:
            protocol.check_message_text(update.text)
        except protocol.ProtocolError as refused:
            # A 2xx all the same: Telegram redelivers any other status for hours, and would fail again.
            self.refuse_text(update, refused)
            return 200, {"ok": True, "refused": refused.code}
        self.process(update)
        return 200, {"ok": True}

    def authenticate(self, headers: Mapping[str, str]) -> None:
        """The secret header must equal the registered secret (constant time); WebhookError(403) otherwise."""
        given = _header(headers, SECRET_HEADER)
        expected = self.secret.get()
        if expected is None:
            logger.error("webhook secret not configured", parameter=self.config.secret_parameter)
            raise WebhookError(403, "forbidden")
        if given is not None and _same(given, expected):
            return
        now = time.monotonic()
        if given is not None and now - self._secret_refreshed_at >= SECRET_REFRESH_SECONDS:
            # Maybe the secret was rotated since we cached it: look once more, at most every 30 s.
            self._secret_refreshed_at = now
            expected = self.secret.get(max_age=0)
            if expected is not None and _same(given, expected):
                return
        raise WebhookError(403, "forbidden")

    # ------------------------------------------------------------------------------------ updates

    def process(self, update: Update) -> None:
        """Act on one update exactly once."""
        command, argument = parse_command(update.text)
        if command is None:
            self._text(update)
            return
        if not self._first_delivery(update):
            count("TelegramDuplicate")
            return
        try:
            self._command(update, command, argument)
        except Exception:
            # Nothing was decided for the user yet (or a reply failed): let Telegram redeliver.
            self._forget_delivery(update)
            raise

    def refuse_text(self, update: Update, refused: protocol.ProtocolError) -> None:
        """Tell a known user why their message was not passed on; a stranger's is dropped. Writes nothing."""
        count("TelegramTextRefused")
        logger.info("telegram text refused", code=refused.code, update_id=update.update_id)
        account = update.account
        if self.user_for(account.telegram_user_id) is None:
            return
        self._best_effort(lambda bot: bot.send_message(account.chat_id, f"⚠️ {refused.message}"))

    def _text(self, update: Update) -> None:
        account = update.account
        user_id = self.user_for(account.telegram_user_id)
        if user_id is None:
            # No dedup row: the refusal's own once-an-hour marker already stops a redelivery repeating it.
            self._refuse(account)
            return
        now = self.clock()
        conversation_id = self.cp.telegram_links.conversation(user_id, now)
        message = IncomingMessage(
            user_id=user_id,
            text=update.text,
            channel="telegram",
            conversation_id=conversation_id,
            idempotency_key=delivery_key(update.update_id),
            reply_to={"chatId": account.chat_id, "messageId": update.message_id},
        )
        accepted, status = routing.accept_message(self.cp, message)
        if accepted.duplicate:
            count("TelegramDuplicate")
            logger.info("telegram update redelivered", update_id=update.update_id)
            return
        count("TelegramMessage")
        logger.info("telegram message accepted", user_id=user_id, status=status, inbox_id=accepted.message_id)
        if status == "running":
            return  # the bridge shows "typing…" as soon as the run starts (tens of ms after the nudge)
        # The agent is waking (or could not start yet): one message that the bridge edits into the answer.
        text = self._waking_text(user_id, status)
        placeholder = self._best_effort(lambda bot: bot.send_message(account.chat_id, text))
        if placeholder is None:
            return
        if not self.cp.inbox.set_reply_field(user_id, accepted.message_id, "placeholderId", placeholder):
            # Already being answered (or answered): the bridge writes its own message, so say it woke.
            self._best_effort(
                lambda bot: bot.edit_message_text(account.chat_id, placeholder, "Your agent is awake.")
            )

    def _waking_text(self, user_id: str, status: str) -> str:
        if status == "idle":
            state = self.cp.task_state.get(user_id, consistent=False)
            why = f" ({state.last_error})" if state.last_error else ""
            return (
                f"⚠️ Your agent could not start yet{why}. Your message is kept; I will answer here as soon "
                "as it runs."
            )
        if status == "stopping":
            return "⏳ Your agent is restarting… your message will be answered here."
        state = self.cp.task_state.get(user_id, consistent=False)
        _, phase, eta = lifecycle.client_status(state, self.clock(), self.cp.cfg.lifecycle)
        if phase == lifecycle.RESTARTING_PHASE:
            return (
                f"⏳ Your agent is restarting (about {eta} s)… I will replace this message with the answer."
            )
        return (
            f"⏳ Waking up your agent (about {self.cp.cfg.lifecycle.start_eta_seconds} s)… "
            "I will replace this message with the answer."
        )

    def _command(self, update: Update, command: str, argument: str) -> None:
        account = update.account
        count("TelegramCommand")
        logger.info("telegram command", command=command, telegram_user=account.telegram_user_id)
        if command == "link":
            self._reply(account, self._link(account, argument))
            return
        user_id = self.user_for(account.telegram_user_id)
        if user_id is None:
            # Asking for help is always answered; the quiet period still starts, so what follows is not.
            due = self.cp.telegram_links.should_refuse(account.telegram_user_id, self.clock())
            if due or command in ("start", "help"):
                self._reply(account, HOW_TO_LINK)
            return
        if command == "start":
            # Opening the chat: someone is about to write, so the agent wakes now (wake on intent).
            self._reply(account, f"{self._wake(user_id)}\n\n{HELP}")
        elif command == "help":
            self._reply(account, HELP)
        elif command == "wake":
            self._reply(account, self._wake(user_id))
        elif command == "status":
            self._reply(account, self._status(user_id, account))
        elif command == "stop":
            aborted = routing.abort_reply(self.cp, user_id, None)
            self._reply(account, "Stopping the reply." if aborted else "Nothing is being written right now.")
        elif command == "new":
            self.cp.telegram_links.new_conversation(user_id, self.clock())
            self._reply(account, "New conversation started. Your next message begins it.")
        elif command == "unlink":
            self._reply(account, self._unlink(account, user_id))

    def _wake(self, user_id: str) -> str:
        """Wake on intent for a known user; one line saying what happened."""
        outcome = routing.wake_on_intent(self.cp, user_id)
        status = outcome.status.get("status")
        why = f" ({outcome.error})" if outcome.error else ""
        if outcome.wake == "started":
            return (
                f"⏳ Waking up your agent (about {self.cp.cfg.lifecycle.start_eta_seconds} s) so it is ready "
                "when you write."
            )
        if outcome.wake == "off":
            return "💤 Waking on open is off in your settings: your agent starts with your first message."
        if outcome.wake in ("held", "failed"):
            return f"⚠️ Your agent could not start{why}. Your next message tries again."
        return {
            "running": "✅ Your agent is awake.",
            "starting": "⏳ Your agent is already waking up.",
            "stopping": "⏹ Your agent is stopping; your next message wakes it again.",
        }.get(str(status), f"Your agent is {status}.")

    def _link(self, account: TelegramAccount, argument: str) -> str:
        if not argument.strip():
            return "Send the code from the web chat's settings like this: /link ABCD2345"
        result = self.cp.telegram_links.redeem(argument, account, self.clock())
        if result.refusal == "rate_limited":
            count("TelegramLinkRateLimited")
            minutes = max(1, (result.retry_in_seconds + 59) // 60)
            return f"Too many wrong codes. Wait {minutes} minutes, then ask the web chat for a new code."
        if result.user_id is None:
            count("TelegramLinkFailed")
            return "That code is not valid (codes work once, for 10 minutes). Ask the web chat for a new one."
        count("TelegramLinked")
        logger.info("telegram account linked", user_id=result.user_id, telegram_user=account.telegram_user_id)
        return "✅ Linked! This chat now talks to the same agent as your web chat. Send me a message."

    def _unlink(self, account: TelegramAccount, user_id: str) -> str:
        if user_id == telegram_user_id(account.telegram_user_id):
            return "This Telegram account is not linked to a web account."
        self.cp.telegram_links.unlink(user_id)
        count("TelegramUnlinked")
        return "Unlinked. Link again any time with a code from the web chat's settings."

    def _status(self, user_id: str, account: TelegramAccount) -> str:
        state = self.cp.task_state.get(user_id, consistent=False)
        name, phase, eta = lifecycle.client_status(state, self.clock(), self.cp.cfg.lifecycle)
        lines = {
            "idle": "💤 Your agent is asleep. It wakes up when you send a message.",
            "starting": (
                "⏳ Your agent is restarting"
                if phase == lifecycle.RESTARTING_PHASE
                else "⏳ Your agent is starting"
            )
            + (f" ({phase})" if phase and phase != lifecycle.RESTARTING_PHASE else "")
            + (f", about {eta} s to go." if eta else "."),
            "running": "✅ Your agent is running" + (" and writing a reply." if state.busy else "."),
            "stopping": "⏹ Your agent is stopping.",
        }
        text = lines.get(name, f"Your agent is {name}.")
        if state.last_error and name == "idle":
            text += f"\nLast start failed: {state.last_error}"
        whose = (
            "This Telegram account has its own agent (allowlist)."
            if user_id == telegram_user_id(account.telegram_user_id)
            else "Linked to your web account."
        )
        return f"{text}\n{whose}"

    def _refuse(self, account: TelegramAccount) -> None:
        count("TelegramStranger")
        if self.cp.telegram_links.should_refuse(account.telegram_user_id, self.clock()):
            logger.info("telegram stranger refused", telegram_user=account.telegram_user_id)
            self._reply(account, HOW_TO_LINK)

    # ------------------------------------------------------------------------------------ helpers

    def user_for(self, telegram_id: int) -> str | None:
        """Whose agent a Telegram user talks to: the linked web user, their own (allowlisted), or nobody."""
        linked = self.cp.telegram_links.linked_user(telegram_id)
        if linked:
            return linked
        if telegram_id in self.config.allowed_user_ids:
            return telegram_user_id(telegram_id)
        return None

    def client(self) -> TelegramClient:
        """The Bot API client (the token is read from SSM once per cold start)."""
        bot = self.bot.client()
        if bot is None:
            raise RuntimeError(f"the bot token is not configured ({self.config.token_parameter})")
        return bot

    def _reply(self, account: TelegramAccount, text: str) -> None:
        self.client().send_message(account.chat_id, text)

    def _best_effort(self, call: Callable[[TelegramClient], Any]) -> Any:
        try:
            return call(self.client())
        except (TelegramError, RuntimeError) as exc:
            # The message is stored and will be answered; only this courtesy message is lost.
            logger.warning("telegram courtesy message failed", error=str(exc))
            return None

    def _first_delivery(self, update: Update) -> bool:
        return self.cp.intake.claim(delivery_key(update.update_id), self.clock())

    def _forget_delivery(self, update: Update) -> None:
        try:
            self.cp.intake.release(delivery_key(update.update_id))
        except Exception:
            logger.exception("could not forget a failed telegram update", update_id=update.update_id)


def delivery_key(update_id: int) -> str:
    """The Idempotency row of one Telegram update."""
    return f"telegram#{update_id}"


def parse_update(body: bytes) -> Update | None:
    """The update's private text message; None for updates the bot ignores; WebhookError for garbage."""
    data = _json_object(body)
    update_id = data.get("update_id")
    if not _is_int(update_id) or not 0 <= update_id < MAX_TELEGRAM_ID:
        raise WebhookError(400, "not an update")
    message = data.get("message")
    if not isinstance(message, dict):
        return None  # edited messages, callbacks, channel posts …: acknowledged and ignored
    parts = _private_text(message)
    if parts is None:
        return None
    text, chat, sender = parts
    chat_id, sender_id, message_id = chat.get("id"), sender.get("id"), message.get("message_id")
    if not (_is_chat_id(chat_id) and _is_chat_id(sender_id) and _is_int(message_id)):
        raise WebhookError(400, "not an update")
    if not 0 < message_id <= MAX_BOT_API_INTEGER:
        raise WebhookError(400, "not an update")
    text = text.strip()
    if not text or len(text.encode("utf-8", "surrogatepass")) > protocol.MAX_MESSAGE_BYTES:
        return None
    return Update(
        update_id=update_id,
        account=TelegramAccount(
            telegram_user_id=sender_id,
            chat_id=chat_id,
            username=_short(sender.get("username")),
            first_name=_short(sender.get("first_name")),
        ),
        message_id=message_id,
        text=text,
    )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = untrusted.parse_json(body, max_bytes=MAX_UPDATE_BYTES) if body else None
    except untrusted.InputTooLarge:
        raise WebhookError(413, "too large") from None
    except untrusted.MalformedJson:
        raise WebhookError(400, "invalid json") from None
    if not isinstance(data, dict):
        raise WebhookError(400, "not an update")
    return data


def _private_text(message: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """(text, chat, sender) of a person's text in a private chat; None for any other message."""
    text, chat, sender = message.get("text"), message.get("chat"), message.get("from")
    if not isinstance(text, str) or not isinstance(chat, dict) or not isinstance(sender, dict):
        return None  # photos, stickers, service messages
    if chat.get("type") != "private" or sender.get("is_bot"):
        return None  # the agent is private: no groups, no other bots
    return text, chat, sender


def parse_command(text: str) -> tuple[str | None, str]:
    """(`link`, `ABCD2345`) for `/link@my_bot ABCD2345`; (None, "") for text and unknown commands."""
    if not text.startswith("/"):
        return None, ""
    head, _, rest = text[1:].partition(" ")
    name = head.split("@", 1)[0].lower()
    if name not in COMMANDS:
        return None, ""  # OpenClaw has slash commands of its own: those go to the agent as text
    return name, rest.strip()


def _decoded(body: str | None, is_base64: bool) -> bytes:
    if not body:
        return b""
    if is_base64:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise WebhookError(400, "invalid body") from None
    return body.encode("utf-8", "surrogatepass")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, val in headers.items():
        if key.lower() == name:
            return val
    return None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_chat_id(value: Any) -> TypeGuard[int]:
    return _is_int(value) and 0 < abs(value) < MAX_TELEGRAM_ID


def _short(value: Any) -> str | None:
    """A name for display: its first 64 characters; None when it is missing or holds control characters."""
    if not isinstance(value, str) or not value or not untrusted.is_clean_text(value):
        return None
    return value[:64]
