"""Recognising a refused conditional write, in both shapes DynamoDB reports it, and nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from serverless_openclaw.aws.clients import client
from serverless_openclaw.store.conditions import condition_failed

TABLE = "test-Idempotency"  # key `id` (template.yaml)


def _error(code: str, *reasons: str) -> ClientError:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": "refused"}}
    if reasons:
        response["CancellationReasons"] = [{"Code": reason} for reason in reasons]
    return ClientError(response, "TransactWriteItems" if reasons else "PutItem")


@pytest.mark.parametrize(
    ("error", "any_item", "first_item", "second_item"),
    [
        (_error("ConditionalCheckFailedException"), True, False, False),
        (_error("TransactionCanceledException", "ConditionalCheckFailed", "None"), True, True, False),
        (_error("TransactionCanceledException", "None", "ConditionalCheckFailed"), True, False, True),
        (_error("TransactionCanceledException", "None", "TransactionConflict"), False, False, False),
        (_error("TransactionCanceledException"), False, False, False),
        (_error("ProvisionedThroughputExceededException"), False, False, False),
        (_error("ResourceNotFoundException"), False, False, False),
    ],
)
def test_a_failed_condition_is_recognised_in_both_shapes_and_nothing_else_is(
    error: ClientError, any_item: bool, first_item: bool, second_item: bool
) -> None:
    # Given an error as DynamoDB reports it, When it is examined for the write or for one item
    # Then only failed conditions count, and asking about one item ignores the others and single writes
    assert condition_failed(error) is any_item
    assert condition_failed(error, item=0) is first_item
    assert condition_failed(error, item=1) is second_item


def _refusal(write: Any) -> ClientError:
    with pytest.raises(ClientError) as refused:
        write()
    return refused.value


def test_dynamodbs_own_refusals_are_recognised(aws: dict[str, str]) -> None:
    # Given a row that exists
    dynamodb = client("dynamodb")
    dynamodb.put_item(TableName=TABLE, Item={"id": {"S": "seen"}})
    create_again = {
        "TableName": TABLE,
        "Item": {"id": {"S": "seen"}},
        "ConditionExpression": "attribute_not_exists(id)",
    }

    # When it is created again on its own, and as the second write of a transaction
    single = _refusal(lambda: dynamodb.put_item(**create_again))
    fresh = {"TableName": TABLE, "Item": {"id": {"S": "fresh"}}}
    batch = _refusal(
        lambda: dynamodb.transact_write_items(TransactItems=[{"Put": fresh}, {"Put": create_again}])
    )

    # Then both are failed conditions, the transaction's on its second item only
    assert condition_failed(single)
    assert condition_failed(batch) and condition_failed(batch, item=1) and not condition_failed(batch, item=0)
    # And nothing of the transaction was written
    assert "Item" not in dynamodb.get_item(TableName=TABLE, Key={"id": {"S": "fresh"}})
