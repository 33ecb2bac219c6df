"""The `aws` fixture restores pristine tables from a snapshot instead of creating them per test: each test
must still start with every table of the template, empty, and nothing else in any AWS service."""

from __future__ import annotations

from serverless_openclaw.aws import clients
from tests.conftest import fresh_aws


def test_every_test_starts_with_the_templates_tables_empty_and_no_other_aws_state(
    pristine_tables: tuple[dict[str, str], bytes],
) -> None:
    names = pristine_tables[0]
    # Given a test that wrote to every table, created a bucket and a parameter
    with fresh_aws(pristine_tables):
        dynamodb = clients.client("dynamodb")
        for table in names.values():
            key = {
                a["AttributeName"]: {"S": "x"}
                for a in dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
            }
            dynamodb.put_item(TableName=table, Item=key)
        clients.client("s3").create_bucket(Bucket="left-behind")
        clients.client("ssm").put_parameter(Name="/left/behind", Value="v", Type="String")
    # When the next test starts
    with fresh_aws(pristine_tables) as fresh:
        dynamodb = clients.client("dynamodb")
        # Then it sees exactly the template's tables, each empty, with their indexes and TTL
        assert fresh == names
        assert sorted(dynamodb.list_tables()["TableNames"]) == sorted(names.values())
        for table in names.values():
            assert dynamodb.scan(TableName=table)["Count"] == 0
        connections = dynamodb.describe_table(TableName=names["CONNECTIONS_TABLE"])["Table"]
        assert [i["IndexName"] for i in connections["GlobalSecondaryIndexes"]] == ["byUser"]
        ttl = dynamodb.describe_time_to_live(TableName=names["INBOX_TABLE"])["TimeToLiveDescription"]
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "ttl"}
        # And nothing else survived
        assert clients.client("s3").list_buckets()["Buckets"] == []
        assert clients.client("ssm").describe_parameters()["Parameters"] == []
