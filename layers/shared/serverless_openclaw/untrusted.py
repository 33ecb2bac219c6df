"""Input from outside the stack: JSON bounded in size, depth and values, and text a person may send.

Every edge that reads JSON someone else wrote (WebSocket frames, HTTP bodies and cursors, Telegram
updates, the agent link's control frames, the operator scripts' files) parses it with `parse_json`,
and every free text a person sends to the agent is checked by `check_text`. One parser and one text
check, rather than a guard in each handler, so a new edge cannot forget a case: each of these once
reached DynamoDB, OpenClaw or Telegram and failed there, as a 500 or as a "retry" that failed again.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 32
"""Deepest nesting of arrays and objects accepted; Telegram's updates, the deepest we read, use under 10."""
MAX_INTEGER = 2**53 - 1
"""Largest integer magnitude accepted: exact in a double (the browser) and far inside DynamoDB's 38 digits."""

_CONTROL_BYTES = bytes(code for code in range(0x20) if chr(code) not in "\t\n\r")
"""C0 control characters other than tab, line feed and carriage return (NUL among them), as UTF-8 bytes:
in UTF-8 these bytes never occur inside another character, and deleting them is C-fast (a regex search
over 32 KiB of text costs half a millisecond)."""
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class BadInput(ValueError):
    """Input refused at the edge; `reason` is short and safe to show the sender."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InputTooLarge(BadInput):
    """The input is over the edge's size limit."""


class MalformedJson(BadInput):
    """Not JSON this stack accepts: bad syntax or encoding, too deep, a lone surrogate or an unsafe number."""


class InvalidText(BadInput):
    """Text that cannot be stored or passed to the agent: a lone surrogate or NUL."""


def parse_json(raw: str | bytes, *, max_bytes: int) -> Any:
    """Parse untrusted JSON (str or UTF-8 bytes); InputTooLarge or MalformedJson (ValueErrors) if refused.

    Refused besides bad syntax: more than `max_bytes` of UTF-8, nesting deeper than MAX_DEPTH (json
    itself would raise RecursionError a few thousand levels down), strings with a lone UTF-16
    surrogate (DynamoDB and every UTF-8 consumer reject them), NaN and infinities, and integers beyond
    MAX_INTEGER (DynamoDB cannot store 40 digits; a browser cannot read 17 exactly).
    """
    text = _utf8_text(raw, max_bytes)
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise MalformedJson(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # bad syntax, and the number checks below
        reason = exc.reason if isinstance(exc, BadInput) else "not valid JSON"
        raise MalformedJson(reason) from None
    # Walking the value costs a pass over it; only input that could break a rule pays for it.
    might_nest = text.count("[") + text.count("{") > MAX_DEPTH
    if might_nest or _SURROGATE_ESCAPE.search(text):
        _check_value(value)
    return value


def check_text(text: str, *, max_bytes: int) -> None:
    """Refuse a message's text over `max_bytes` of UTF-8 (InputTooLarge), or holding a lone surrogate or
    NUL (InvalidText): OpenClaw refuses NUL outright. Other control characters pass, as OpenClaw accepts
    them: text pasted from a PDF carries form feeds, and refusing it would leave the person no way to send it.
    """
    utf8 = _utf8_of(text)
    if len(utf8) > max_bytes:
        raise InputTooLarge(f"it is larger than {max_bytes // 1024} KiB")
    if b"\0" in utf8:
        raise InvalidText("it contains a NUL character, which cannot be sent")


def is_clean_text(text: str) -> bool:
    """True for a name or label without a lone surrogate or any C0 control but tab, line feed and CR."""
    try:
        utf8 = _utf8_of(text)
    except InvalidText:
        return False
    return len(utf8.translate(None, _CONTROL_BYTES)) == len(utf8)


def _utf8_of(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidText("it contains an invalid character (a lone UTF-16 surrogate)") from None


def _utf8_text(raw: str | bytes, max_bytes: int) -> str:
    if isinstance(raw, bytes):
        if len(raw) > max_bytes:
            raise InputTooLarge(f"larger than {max_bytes // 1024} KiB")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedJson("not UTF-8") from None
    try:
        size = len(raw.encode("utf-8"))
    except UnicodeEncodeError:
        raise MalformedJson("a string holds a lone UTF-16 surrogate") from None
    if size > max_bytes:
        raise InputTooLarge(f"larger than {max_bytes // 1024} KiB")
    return raw


def _integer(literal: str) -> int:
    # Python parses ints of up to 4,300 digits; the length test spares the conversion of ordinary ones.
    value = int(literal)
    if len(literal) > 15 and abs(value) > MAX_INTEGER:
        raise MalformedJson("a number is too large")
    return value


def _float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise MalformedJson("a number is too large")
    return value


def _constant(literal: str) -> Any:
    raise MalformedJson(f"{literal} is not a JSON number")


_DECODER = json.JSONDecoder(parse_int=_integer, parse_float=_float, parse_constant=_constant)


def _check_value(value: Any) -> None:
    """Depth and lone surrogates, iteratively (a recursive walk is what deep input attacks)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                raise MalformedJson("a string holds a lone UTF-16 surrogate") from None
            continue
        if not isinstance(node, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise MalformedJson(f"nested deeper than {MAX_DEPTH} levels")
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        pending.extend((child, depth + 1) for child in children)
