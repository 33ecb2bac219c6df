"""Recognising a DynamoDB write that was refused because its condition did not hold.

A single write reports it as `ConditionalCheckFailedException`; a transaction is cancelled as a whole
(`TransactionCanceledException`) with one reason per item, `ConditionalCheckFailed` on the items whose
condition failed.
"""

from __future__ import annotations

from botocore.exceptions import ClientError


def condition_failed(exc: ClientError, *, item: int | None = None) -> bool:
    """Whether `exc` is a failed condition: of the write, or of any item of a transaction.

    With `item`, only a transaction whose item at that index failed its condition counts: the caller
    wants to know about that one write (the others' conditions mean something else, or there are none).
    """
    code = exc.response.get("Error", {}).get("Code")
    if code == "ConditionalCheckFailedException":
        return item is None
    if code != "TransactionCanceledException":
        return False
    reasons = exc.response.get("CancellationReasons") or []
    if item is None:
        return any(reason.get("Code") == "ConditionalCheckFailed" for reason in reasons)
    return len(reasons) > item and reasons[item].get("Code") == "ConditionalCheckFailed"
