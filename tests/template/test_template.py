"""Invariants of template.yaml that a reviewer cares about, and the helpers in local.template that read it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.template import (
    DEFAULT_TEMPLATE_PATH,
    TemplateError,
    create_tables,
    function_definitions,
    globals_environment,
    globals_function,
    load_template,
    resources_of_type,
    table_definitions,
)

REPO_ROOT = DEFAULT_TEMPLATE_PATH.parent
TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
PARAMETERS: dict[str, Any] = TEMPLATE["Parameters"]
FUNCTIONS = resources_of_type(TEMPLATE, "AWS::Serverless::Function")
TABLES = resources_of_type(TEMPLATE, "AWS::DynamoDB::Table")
WEBSOCKET_ROUTE_KEYS = ["$connect", "$disconnect", "$default"]

# Actions that have no resource type to scope to, and the condition that must narrow them instead.
RESOURCE_LESS_ACTIONS: dict[str, tuple[str, str] | None] = {
    "xray:PutTraceSegments": None,
    "xray:PutTelemetryRecords": None,
    "cloudwatch:PutMetricData": ("StringEquals", "cloudwatch:namespace"),
    "ecs:ListTasks": ("ArnEquals", "ecs:cluster"),
    "ecs:DescribeTasks": ("ArnEquals", "ecs:cluster"),
    "scheduler:ListSchedules": None,
}

# AWS managed policies we accept, and the one role each may be attached to.
ALLOWED_MANAGED_POLICIES = {
    "BridgeExecutionRole": "policy/service-role/AmazonECSTaskExecutionRolePolicy",
    "ApiGatewayCloudWatchRole": "policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs",
}


# --------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------


def _properties(logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = RESOURCES[logical_id].get("Properties", {})
    return properties


def _function_setting(logical_id: str, key: str) -> Any:
    """A function property, falling back to Globals.Function as SAM does."""
    return _properties(logical_id).get(key, globals_function(TEMPLATE).get(key))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _sub_text(value: Any) -> str:
    """The template string of an `!Sub` (scalar or `[string, variables]` form); '' for anything else."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return str(sub[0] if isinstance(sub, list) else sub)
    return ""


def _referenced_id(value: Any) -> str | None:
    """The logical id behind `!Ref X` or `!GetAtt X.Attr`."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    return None


def _evaluate(value: Any, overrides: dict[str, str] | None = None) -> Any:
    """Resolve `!If`, conditions and parameter `!Ref`s with parameter defaults (plus overrides)."""
    parameters = {name: str(p["Default"]) for name, p in PARAMETERS.items() if "Default" in p}
    parameters.update(overrides or {})

    def condition(name: str) -> bool:
        return bool(evaluate(TEMPLATE["Conditions"][name]))

    def evaluate(node: Any) -> Any:
        if not (isinstance(node, dict) and len(node) == 1):
            return node
        ((function, argument),) = node.items()
        if function == "Ref" and argument in parameters:
            return parameters[argument]
        if function == "Condition":
            return condition(argument)
        if function == "Fn::Equals":
            return str(evaluate(argument[0])) == str(evaluate(argument[1]))
        if function == "Fn::Not":
            return not evaluate(argument[0])
        if function == "Fn::And":
            return all(evaluate(item) for item in argument)
        if function == "Fn::Or":
            return any(evaluate(item) for item in argument)
        if function == "Fn::If":
            name, when_true, when_false = argument
            return evaluate(when_true if condition(name) else when_false)
        return node

    return evaluate(value)


def _statements(document: Any) -> Iterator[dict[str, Any]]:
    """Statements of a policy document, with both branches of any `!If` (AWS::NoValue dropped)."""
    for statement in _as_list(document.get("Statement", [])):
        if isinstance(statement, dict) and "Fn::If" in statement:
            branches = statement["Fn::If"][1:]
        else:
            branches = [statement]
        for branch in branches:
            if branch != {"Ref": "AWS::NoValue"}:
                yield branch


def _iam_statements() -> Iterator[tuple[str, dict[str, Any]]]:
    """(logical id, statement) for every identity policy statement the template grants."""
    for logical_id, resource in RESOURCES.items():
        properties = resource.get("Properties", {})
        kind = resource["Type"]
        documents: list[Any] = []
        if kind == "AWS::Serverless::Function":
            documents = [
                p for p in properties.get("Policies", []) if isinstance(p, dict) and "Statement" in p
            ]
        elif kind == "AWS::IAM::Role":
            documents = [policy["PolicyDocument"] for policy in properties.get("Policies", [])]
        elif kind in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
            documents = [properties["PolicyDocument"]]
        for document in documents:
            for statement in _statements(document):
                yield logical_id, statement


def _websocket_route(route_key: str) -> tuple[str, dict[str, Any]]:
    routes = [
        (logical_id, route["Properties"])
        for logical_id, route in resources_of_type(TEMPLATE, "AWS::ApiGatewayV2::Route").items()
        if route["Properties"].get("RouteKey") == route_key
    ]
    assert len(routes) == 1, f"expected exactly one WebSocket route {route_key}, found {len(routes)}"
    return routes[0]


# --------------------------------------------------------------------------------------------------------
# Functions
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("function_id", sorted(FUNCTIONS))
def test_function_uses_the_shared_layer(function_id: str) -> None:
    # Given a function of the stack
    # When its layers are resolved with Globals
    layers = _function_setting(function_id, "Layers") or []

    # Then the shared layer is one of them
    assert {"Ref": "SharedLayer"} in layers


@pytest.mark.parametrize("function_id", sorted(FUNCTIONS))
def test_function_runs_python312_on_arm64_with_active_tracing(function_id: str) -> None:
    # Given a function of the stack
    # When its runtime settings are resolved with Globals
    settings = {key: _function_setting(function_id, key) for key in ("Runtime", "Architectures", "Tracing")}

    # Then it runs Python 3.12 on Graviton with X-Ray tracing
    assert settings == {"Runtime": "python3.12", "Architectures": ["arm64"], "Tracing": "Active"}


@pytest.mark.parametrize("function_id", sorted(FUNCTIONS))
def test_function_logs_to_an_explicit_log_group_with_retention(function_id: str) -> None:
    # Given a function of the stack
    logging_config = _function_setting(function_id, "LoggingConfig") or {}

    # When its log group is looked up
    log_group_id = _referenced_id(logging_config.get("LogGroup"))

    # Then it is a log group of this template with a retention
    assert log_group_id in RESOURCES, f"{function_id} has no LoggingConfig.LogGroup of this template"
    assert RESOURCES[log_group_id]["Type"] == "AWS::Logs::LogGroup"
    assert RESOURCES[log_group_id]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


@pytest.mark.parametrize("function_id", sorted(FUNCTIONS))
def test_function_code_uri_contains_app_py(function_id: str) -> None:
    # Given a function of the stack
    code_uri = _function_setting(function_id, "CodeUri")

    # When its code directory is looked up in the repository
    app = REPO_ROOT / code_uri / "app.py"

    # Then the handler module exists (sam build would otherwise ship an empty function)
    assert app.is_file(), f"{function_id}: {app.relative_to(REPO_ROOT)} does not exist"


@pytest.mark.parametrize("function_id", sorted(FUNCTIONS))
def test_function_has_an_errors_alarm_on_the_alarm_topic(function_id: str) -> None:
    # Given a function of the stack
    # When the alarms watching its Lambda Errors metric are collected
    alarms = [
        alarm["Properties"]
        for alarm in resources_of_type(TEMPLATE, "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("Namespace") == "AWS/Lambda"
        and alarm["Properties"].get("MetricName") == "Errors"
        and {"Name": "FunctionName", "Value": {"Ref": function_id}}
        in alarm["Properties"].get("Dimensions", [])
    ]

    # Then one exists and notifies the alarm topic
    assert len(alarms) == 1
    assert alarms[0]["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_shared_layer_is_built_for_python312_on_arm64() -> None:
    # Given the shared layer
    layer = RESOURCES["SharedLayer"]

    # When its build metadata and compatibility are read
    build = layer["Metadata"]
    properties = layer["Properties"]

    # Then sam build installs its dependencies for the Lambda runtime the functions use, with the layer's
    # Makefile (tests/template/test_layer_build.py: arm64 wheels for python3.12, and their bytecode)
    assert build == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}
    assert properties["CompatibleRuntimes"] == ["python3.12"]
    assert properties["CompatibleArchitectures"] == ["arm64"]


def test_watchdog_runs_every_five_minutes() -> None:
    # Given the watchdog function
    events = _properties("WatchdogFunction")["Events"].values()

    # When its schedules are collected
    schedules = [event["Properties"]["Schedule"] for event in events if event["Type"] == "Schedule"]

    # Then it runs every five minutes
    assert schedules == ["rate(5 minutes)"]


def test_task_events_rules_match_only_our_clusters_stops_and_our_bridges_pulls() -> None:
    # Given the task events function and the bridge's task definition family
    events = _properties("TaskEventsFunction")["Events"]
    family = _properties("BridgeTaskDefinition")["Family"]

    # When its EventBridge patterns are collected
    patterns = {name: event["Properties"]["Pattern"] for name, event in events.items()}
    assert all(event["Type"] == "EventBridgeRule" for event in events.values())

    # Then one takes STOPPED ECS tasks of this stack's cluster, the other only the states that can carry
    # pullStartedAt, of this cluster and of the bridge's own task family
    cluster = [{"Fn::GetAtt": ["Cluster", "Arn"]}]
    assert family == {"Fn::Sub": "${AWS::StackName}-bridge"}
    assert patterns == {
        "TaskStopped": {
            "source": ["aws.ecs"],
            "detail-type": ["ECS Task State Change"],
            "detail": {"clusterArn": cluster, "lastStatus": ["STOPPED"]},
        },
        "TaskPulling": {
            "source": ["aws.ecs"],
            "detail-type": ["ECS Task State Change"],
            "detail": {
                "clusterArn": cluster,
                "group": [{"Fn::Sub": "family:${AWS::StackName}-bridge"}],
                "lastStatus": ["PENDING", "ACTIVATING", "RUNNING"],
            },
        },
    }


def test_every_sample_event_parses_and_names_a_function_directory() -> None:
    # Given the sample events and the function code directories
    events_dir = REPO_ROOT / "events"
    files = sorted(events_dir.rglob("*.json")) if events_dir.is_dir() else []
    function_dirs = {Path(_function_setting(f, "CodeUri")).name for f in FUNCTIONS}
    assert files, f"no sample events in {events_dir}: add events/<function_dir>*.json for each function"

    # When each file is parsed and its name matched to a function directory
    problems = []
    for file in files:
        name = file.relative_to(events_dir).parts[0]
        if not any(name.startswith(directory) for directory in function_dirs):
            problems.append(f"{file.relative_to(REPO_ROOT)}: name does not start with a function directory")
        try:
            json.loads(file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            problems.append(f"{file.relative_to(REPO_ROOT)}: not JSON ({exc})")

    # Then every file is usable by `sam local invoke` and the handler tests
    assert problems == []


# --------------------------------------------------------------------------------------------------------
# Least privilege
# --------------------------------------------------------------------------------------------------------


def test_wildcard_resources_are_granted_only_to_resource_less_actions_under_their_condition() -> None:
    # Given every Allow statement of every identity policy
    # When statements on Resource "*" are checked against the allow-list
    offenders = []
    for logical_id, statement in _iam_statements():
        if statement.get("Effect") != "Allow" or "*" not in _as_list(statement.get("Resource")):
            continue
        for action in _as_list(statement.get("Action")):
            if action not in RESOURCE_LESS_ACTIONS:
                offenders.append(f"{logical_id}: {action} on *")
                continue
            required = RESOURCE_LESS_ACTIONS[action]
            if required and required[1] not in statement.get("Condition", {}).get(required[0], {}):
                offenders.append(f"{logical_id}: {action} on * without {required[0]} {required[1]}")

    # Then nothing else is granted on every resource
    assert offenders == []


def test_no_policy_grants_wildcard_actions() -> None:
    # Given every Allow statement of every identity policy
    # When their actions are collected
    wildcards = [
        f"{logical_id}: {action}"
        for logical_id, statement in _iam_statements()
        if statement.get("Effect") == "Allow"
        for action in _as_list(statement.get("Action"))
        if action == "*" or str(action).endswith(":*")
    ]

    # Then every action is named
    assert wildcards == []


@pytest.mark.parametrize("function_id", sorted(FUNCTIONS))
def test_function_permissions_are_inline_statements(function_id: str) -> None:
    # Given a function of the stack
    policies = _properties(function_id).get("Policies", [])

    # When its policies are classified
    not_inline = [policy for policy in policies if not (isinstance(policy, dict) and "Statement" in policy)]

    # Then there are some, and all are reviewable inline statements (no managed policy, no SAM template)
    assert policies
    assert not_inline == []


def test_only_expected_managed_policies_are_attached() -> None:
    # Given every IAM role
    # When their AWS managed policies are collected
    attached = {
        (logical_id, _sub_text(arn) or str(arn))
        for logical_id, role in resources_of_type(TEMPLATE, "AWS::IAM::Role").items()
        for arn in role["Properties"].get("ManagedPolicyArns", [])
    }

    # Then each is on the allow-list for that role
    unexpected = [
        f"{logical_id}: {arn}"
        for logical_id, arn in attached
        if not arn.endswith(f":iam::aws:{ALLOWED_MANAGED_POLICIES.get(logical_id, '-')}")
    ]
    assert unexpected == []


@pytest.mark.parametrize("role_id", ["BridgeTaskRole", "BridgeExecutionRole"])
def test_bridge_roles_trust_only_ecs_tasks_of_this_account(role_id: str) -> None:
    # Given a role of the agent task
    trust = _properties(role_id)["AssumeRolePolicyDocument"]["Statement"]

    # When its trust statements are read
    # Then only ECS tasks may assume it, and only on behalf of this account (no confused deputy)
    assert trust == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
        }
    ]


def test_bridge_reads_and_writes_only_the_users_prefix_of_the_data_bucket() -> None:
    # Given the agent task's statements on S3
    statements = [
        statement
        for logical_id, statement in _iam_statements()
        if logical_id == "BridgeTaskRole"
        and any(str(a).startswith("s3:") for a in _as_list(statement["Action"]))
    ]

    # When their resources and conditions are collected
    object_resources = [s["Resource"] for s in statements if s["Action"] != "s3:ListBucket"]
    list_conditions = [s.get("Condition") for s in statements if s["Action"] == "s3:ListBucket"]

    # Then objects are reachable only under users/ and listing is limited to that prefix
    assert object_resources == [{"Fn::Sub": "${DataBucket.Arn}/users/*"}]
    assert list_conditions == [{"StringLike": {"s3:prefix": ["users/*"]}}]


# --------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("table_id", sorted(TABLES))
def test_table_is_on_demand_with_pitr_encryption_and_ttl(table_id: str) -> None:
    # Given a DynamoDB table
    properties = _properties(table_id)

    # When its durability and cost settings are read
    settings = (
        properties.get("BillingMode"),
        properties.get("PointInTimeRecoverySpecification"),
        properties.get("SSESpecification"),
        properties.get("TimeToLiveSpecification"),
    )

    # Then it costs nothing idle, can be restored, is encrypted and expires items on `ttl`
    assert settings == (
        "PAY_PER_REQUEST",
        {"PointInTimeRecoveryEnabled": True},
        {"SSEEnabled": True},
        {"AttributeName": "ttl", "Enabled": True},
    )


@pytest.mark.parametrize("table_id", sorted(TABLES))
def test_table_survives_stack_deletion_and_replacement(table_id: str) -> None:
    # Given a DynamoDB table
    resource = RESOURCES[table_id]

    # When its deletion policies are read
    # Then user data is retained
    assert (resource.get("DeletionPolicy"), resource.get("UpdateReplacePolicy")) == ("Retain", "Retain")


def test_every_table_variable_in_globals_names_a_table_of_the_template() -> None:
    # Given the environment every function gets
    environment = globals_environment(TEMPLATE)

    # When the *_TABLE variables are resolved
    targets = {name: _referenced_id(value) for name, value in environment.items() if name.endswith("_TABLE")}

    # Then each names a DynamoDB table, and every table has one
    assert all(target in TABLES for target in targets.values()), targets
    assert sorted(targets.values()) == sorted(TABLES)


def test_bridge_sees_the_same_tables_as_the_functions() -> None:
    # Given the table variables of the functions and of the bridge container
    functions = {k: v for k, v in globals_environment(TEMPLATE).items() if k.endswith("_TABLE")}
    container = _properties("BridgeTaskDefinition")["ContainerDefinitions"][0]

    # When the bridge's variables are collected
    bridge = {e["Name"]: e["Value"] for e in container["Environment"] if e["Name"].endswith("_TABLE")}

    # Then both sides talk about the same tables under the same names
    assert bridge == functions


def test_every_bucket_blocks_public_access_and_encrypts() -> None:
    # Given every bucket of the template (the agent's data and the web chat's files, and any added later)
    buckets = resources_of_type(TEMPLATE, "AWS::S3::Bucket")
    assert {"DataBucket", "WebBucket"} <= set(buckets)

    for logical_id, bucket in buckets.items():
        properties = bucket["Properties"]
        # Then all four blocks are on, ACLs are disabled and objects are encrypted at rest
        assert properties["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, logical_id
        assert properties["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}, (
            logical_id
        )
        assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
        ], logical_id


def test_data_bucket_keeps_versions_for_the_backup_retention() -> None:
    # Given the data bucket
    properties = _properties("DataBucket")

    # When its versioning and lifecycle are read
    rules = properties["LifecycleConfiguration"]["Rules"]

    # Then overwritten backups stay recoverable for BackupRetentionDays, then expire
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert [rule["NoncurrentVersionExpiration"] for rule in rules] == [
        {"NoncurrentDays": {"Ref": "BackupRetentionDays"}}
    ]
    assert RESOURCES["DataBucket"]["DeletionPolicy"] == "Retain"


def test_data_bucket_denies_requests_without_tls() -> None:
    # Given the policies attached to the data bucket
    policies = [
        p["Properties"]["PolicyDocument"]
        for p in resources_of_type(TEMPLATE, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": "DataBucket"}
    ]

    # When their deny statements on insecure transport are collected
    denies = [
        statement
        for document in policies
        for statement in _statements(document)
        if statement["Effect"] == "Deny"
        and statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    ]

    # Then every S3 action on the bucket and its objects is denied to everyone over plain HTTP
    assert len(denies) == 1
    assert (denies[0]["Principal"], denies[0]["Action"]) == ("*", "s3:*")
    assert denies[0]["Resource"] == [
        {"Fn::GetAtt": ["DataBucket", "Arn"]},
        {"Fn::Sub": "${DataBucket.Arn}/*"},
    ]


# --------------------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------------------


def test_no_security_group_allows_ingress() -> None:
    # Given every security group resource
    standalone = resources_of_type(TEMPLATE, "AWS::EC2::SecurityGroupIngress")
    groups = resources_of_type(TEMPLATE, "AWS::EC2::SecurityGroup")

    # When ingress rules are collected
    inline = {group_id for group_id, group in groups.items() if "SecurityGroupIngress" in group["Properties"]}

    # Then there are none: the agent dials out, nothing dials in
    assert (sorted(standalone), sorted(inline)) == ([], [])


def test_task_security_group_allows_only_https_egress() -> None:
    # Given the agent task's security group
    egress = _properties("TaskSecurityGroup")["SecurityGroupEgress"]

    # When its egress rules are reduced to protocol and ports
    rules = [(rule["IpProtocol"], rule["FromPort"], rule["ToPort"], rule["CidrIp"]) for rule in egress]

    # Then only HTTPS/WSS leaves the task
    assert rules == [("tcp", 443, 443, "0.0.0.0/0")]


def test_bridge_container_exposes_no_port() -> None:
    # Given the bridge container
    container = _properties("BridgeTaskDefinition")["ContainerDefinitions"][0]

    # When its port mappings are read
    # Then there are none
    assert "PortMappings" not in container


# --------------------------------------------------------------------------------------------------------
# WebSocket API
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route_key", WEBSOCKET_ROUTE_KEYS)
def test_websocket_route_integrates_a_function_allowed_only_for_that_route(route_key: str) -> None:
    # Given a WebSocket route
    _, route = _websocket_route(route_key)

    # When its integration and the function behind it are resolved
    target = re.fullmatch(r"integrations/\$\{(\w+)\}", _sub_text(route["Target"]))
    assert target, f"{route_key} target is not integrations/${{Integration}}"
    integration = _properties(target.group(1))
    function = re.search(
        r"/functions/\$\{(\w+)\.Arn\}/invocations$", _sub_text(integration["IntegrationUri"])
    )
    assert integration["IntegrationType"] == "AWS_PROXY"
    assert function and function.group(1) in FUNCTIONS, f"{route_key} does not integrate a function"
    permissions = [
        p["Properties"]
        for p in resources_of_type(TEMPLATE, "AWS::Lambda::Permission").values()
        if _referenced_id(p["Properties"]["FunctionName"]) == function.group(1)
    ]

    # Then API Gateway may invoke that function, and only through that route
    source_arns = [_sub_text(p["SourceArn"]) for p in permissions]
    assert source_arns, f"no Lambda permission for {function.group(1)}"
    assert all(arn.endswith(f":${{WebSocketApi}}/*/{route_key}") for arn in source_arns), source_arns


def test_default_route_returns_the_function_response_to_the_client() -> None:
    # Given the $default route
    route_id, route = _websocket_route("$default")

    # When its route responses are collected
    responses = [
        r["Properties"]
        for r in resources_of_type(TEMPLATE, "AWS::ApiGatewayV2::RouteResponse").values()
        if r["Properties"]["RouteId"] == {"Ref": route_id}
    ]

    # Then the route is two-way
    assert route["RouteResponseSelectionExpression"] == "$default"
    assert [r["RouteResponseKey"] for r in responses] == ["$default"]


def test_websocket_deployment_waits_for_every_route() -> None:
    # Given the WebSocket deployment
    deployments = resources_of_type(TEMPLATE, "AWS::ApiGatewayV2::Deployment")
    assert len(deployments) == 1
    (deployment,) = deployments.values()

    # When the routes it depends on are compared with all routes
    routes = set(resources_of_type(TEMPLATE, "AWS::ApiGatewayV2::Route"))

    # Then it is created after all of them (an earlier deployment would publish an empty stage)
    assert routes <= set(_as_list(deployment.get("DependsOn", [])))


def test_websocket_stage_is_throttled_and_logged() -> None:
    # Given the WebSocket stage
    stage = _properties("WebSocketStage")

    # When its route settings and access logs are read
    settings = stage["DefaultRouteSettings"]
    log_group_id = _referenced_id(stage["AccessLogSettings"]["DestinationArn"])

    # Then every route is throttled by parameter and access logs go to a group with retention
    assert stage["StageName"] == "prod"
    assert settings["ThrottlingRateLimit"] == {"Ref": "WebSocketThrottleRate"}
    assert settings["ThrottlingBurstLimit"] == {"Ref": "WebSocketThrottleBurst"}
    assert "RetentionInDays" in _properties(str(log_group_id))


# --------------------------------------------------------------------------------------------------------
# HTTP API and users
# --------------------------------------------------------------------------------------------------------


def test_http_api_requires_a_cognito_jwt_by_default() -> None:
    # Given the HTTP API
    auth = _properties("HttpApi")["Auth"]

    # When its default authorizer is resolved
    authorizer = auth["Authorizers"][auth["DefaultAuthorizer"]]

    # Then it is a JWT authorizer on our pool's issuer and our app client
    assert authorizer["IdentitySource"] == "$request.header.Authorization"
    assert _sub_text(authorizer["JwtConfiguration"]["issuer"]).endswith("/${UserPool}")
    assert authorizer["JwtConfiguration"]["audience"] == [{"Ref": "UserPoolClient"}]


def test_only_post_telegram_may_skip_the_jwt_authorizer() -> None:
    # Given every HTTP API route declared on a function
    routes = [
        event["Properties"]
        for function_id in FUNCTIONS
        for event in _properties(function_id).get("Events", {}).values()
        if event["Type"] == "HttpApi"
    ]

    # When routes that opt out of the default authorizer are collected
    public = [
        (route.get("Method"), route.get("Path"))
        for route in routes
        if route.get("Auth", {}).get("Authorizer", "CognitoJwt") != "CognitoJwt"
    ]

    # Then the only public route can be Telegram's webhook (checked by its secret token)
    assert routes
    assert set(public) <= {("POST", "/telegram"), ("post", "/telegram")}


def test_telegram_webhook_is_the_public_post_telegram_route() -> None:
    events = _properties("TelegramWebhookFunction")["Events"]
    [route] = [e["Properties"] for e in events.values() if e["Type"] == "HttpApi"]
    assert (route["Method"], route["Path"], route["Auth"]) == ("POST", "/telegram", {"Authorizer": "NONE"})


def _ssm_grants() -> dict[str, set[str]]:
    grants: dict[str, set[str]] = {}
    for logical_id, statement in _iam_statements():
        if any(str(a).startswith("ssm:") for a in _as_list(statement["Action"])):
            grants.setdefault(logical_id, set()).update(
                _sub_text(r).rsplit("parameter/", 1)[-1] for r in _as_list(statement["Resource"])
            )
    return grants


def test_telegram_secrets_are_read_only_where_needed() -> None:
    # The webhook reads its two parameters, the give-up notices only the token, the bridge its secrets.
    assert _ssm_grants() == {
        "TelegramWebhookFunction": {
            "${AWS::StackName}/secrets/telegram-bot-token",
            "${AWS::StackName}/secrets/telegram-webhook-secret",
        },
        "TaskEventsFunction": {"${AWS::StackName}/secrets/telegram-bot-token"},
        "WatchdogFunction": {"${AWS::StackName}/secrets/telegram-bot-token"},
        "BridgeTaskRole": {"${AWS::StackName}/secrets/*"},
    }
    for logical_id, statement in _iam_statements():
        actions = {str(a) for a in _as_list(statement["Action"]) if str(a).startswith("ssm:")}
        assert actions <= {"ssm:GetParameter", "ssm:GetParameters"}, logical_id


def test_the_bridge_gets_the_bot_tokens_parameter_name_never_a_token() -> None:
    container = _properties("BridgeTaskDefinition")["ContainerDefinitions"][0]
    names = {pair["Name"] for pair in container["Environment"]}
    assert "TELEGRAM_BOT_TOKEN_PARAMETER" in names and "TELEGRAM_API_BASE" in names
    assert not {n for n in names if "TOKEN" in n} - {"TELEGRAM_BOT_TOKEN_PARAMETER"}
    assert "Secrets" not in container


def test_only_the_webhook_knows_the_telegram_allowlist() -> None:
    holders = [
        f
        for f in FUNCTIONS
        if "TELEGRAM_ALLOWED_USER_IDS" in _function_setting(f, "Environment")["Variables"]
    ]
    assert holders == ["TelegramWebhookFunction"]
    assert "TELEGRAM_ALLOWED_USER_IDS" not in TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]


def test_http_api_cors_names_its_origin_without_wildcards() -> None:
    # Given the HTTP API's CORS configuration
    cors = _properties("HttpApi")["CorsConfiguration"]

    # When origins, headers and methods are resolved with parameter defaults
    values = [
        str(_evaluate(v)) for key in ("AllowOrigins", "AllowHeaders", "AllowMethods") for v in cors[key]
    ]

    # Then none is a wildcard, and the origin parameter cannot be set to one either
    assert not any("*" in value for value in values), values
    assert not re.fullmatch(PARAMETERS["WebOrigin"]["AllowedPattern"], "*")
    assert not re.fullmatch(PARAMETERS["WebOrigin"]["AllowedPattern"], "https://*.example.com")


def test_http_api_cors_allows_the_stacks_web_chat_unless_an_origin_is_given() -> None:
    # Given the HTTP API's one allowed origin
    (origin,) = _properties("HttpApi")["CorsConfiguration"]["AllowOrigins"]

    # When it is evaluated with the default WebOrigin, and with an operator's own
    default = _evaluate(origin)
    chosen = _evaluate(origin, {"WebOrigin": "https://chat.example.com"})

    # Then by default it is the CloudFront distribution serving the web chat, otherwise the one given
    assert default == {"Fn::Sub": "https://${WebDistribution.DomainName}"}
    assert chosen == "https://chat.example.com"
    assert re.fullmatch(PARAMETERS["WebOrigin"]["AllowedPattern"], "")


def test_user_pool_is_invite_only_unless_self_sign_up_is_enabled() -> None:
    # Given the user pool's admin-create-only setting
    setting = _properties("UserPool")["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"]

    # When it is resolved with the default parameters and with AllowSelfSignUp=true
    by_default = _evaluate(setting)
    when_enabled = _evaluate(setting, {"AllowSelfSignUp": "true"})

    # Then strangers cannot sign up by default, and the parameter does open it
    assert PARAMETERS["AllowSelfSignUp"]["Default"] == "false"
    assert (by_default, when_enabled) == (True, False)


def test_user_pool_requires_strong_passwords() -> None:
    # Given the user pool's password policy
    policy = _properties("UserPool")["Policies"]["PasswordPolicy"]

    # When its requirements are read
    required = [policy.get(key) for key in ("RequireUppercase", "RequireLowercase", "RequireNumbers")]

    # Then passwords are long and mixed
    assert policy["MinimumLength"] >= 12
    assert required + [policy.get("RequireSymbols")] == [True, True, True, True]


# --------------------------------------------------------------------------------------------------------
# Agent task
# --------------------------------------------------------------------------------------------------------


def test_bridge_task_is_arm64_fargate() -> None:
    # Given the bridge task definition
    properties = _properties("BridgeTaskDefinition")

    # When its platform is read
    # Then it runs on Graviton Fargate in awsvpc mode
    assert properties["RuntimePlatform"] == {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"}
    assert (properties["RequiresCompatibilities"], properties["NetworkMode"]) == (["FARGATE"], "awsvpc")


def test_bridge_container_runs_an_init_process_and_gets_the_full_stop_timeout() -> None:
    # Given the bridge container
    container = _properties("BridgeTaskDefinition")["ContainerDefinitions"][0]

    # When its process settings are read
    # Then signals reach the bridge through an init process and it has 120 s to finish and back up
    assert container["Name"] == "bridge"
    assert container["LinuxParameters"]["InitProcessEnabled"] is True
    assert container["StopTimeout"] == 120


def test_bridge_task_size_defaults_to_one_vcpu_and_two_gib() -> None:
    # Given the bridge task definition
    properties = _properties("BridgeTaskDefinition")

    # When its size is resolved with parameter defaults
    size = (_evaluate(properties["Cpu"]), _evaluate(properties["Memory"]))

    # Then it is 1 vCPU / 2 GiB, set by the TaskCpu and TaskMemory parameters
    assert (properties["Cpu"], properties["Memory"]) == ({"Ref": "TaskCpu"}, {"Ref": "TaskMemory"})
    assert size == ("1024", "2048")


def test_cluster_prefers_fargate_spot() -> None:
    # Given the ECS cluster
    properties = _properties("Cluster")

    # When its capacity providers are read
    # Then tasks default to Spot and may fall back to on-demand Fargate
    assert sorted(properties["CapacityProviders"]) == ["FARGATE", "FARGATE_SPOT"]
    assert properties["DefaultCapacityProviderStrategy"] == [
        {"CapacityProvider": "FARGATE_SPOT", "Weight": 1}
    ]


def test_alarm_topic_can_receive_cloudwatch_alarms() -> None:
    # Given the alarm topic
    properties = _properties("AlarmTopic")

    # When its encryption key is read
    # Then it is not the AWS managed SNS key, whose policy silently blocks CloudWatch alarm actions
    assert properties.get("KmsMasterKeyId") != "alias/aws/sns"


# --------------------------------------------------------------------------------------------------------
# cfn-lint
# --------------------------------------------------------------------------------------------------------


def test_cfn_lint_reports_nothing() -> None:
    # Given the cfn-lint installed next to this interpreter
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    assert cfn_lint.is_file(), f"cfn-lint is not installed in {cfn_lint.parent}"

    # When it lints the template
    result = subprocess.run(
        [str(cfn_lint), str(DEFAULT_TEMPLATE_PATH)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    # Then it finds no error and no warning
    assert result.returncode == 0, f"cfn-lint exited {result.returncode}:\n{result.stdout}{result.stderr}"


# --------------------------------------------------------------------------------------------------------
# local.template
# --------------------------------------------------------------------------------------------------------


# tests/conftest.py leaves boto3 fake credentials and no endpoint override: it can only reach moto.


def test_create_tables_creates_every_table_with_its_keys_index_and_ttl() -> None:
    # Given an empty DynamoDB
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")

        # When the template's tables are created under a prefix
        names = create_tables(client, TEMPLATE, "test")

        # Then all six exist with the declared keys, the byUser index and TTL on `ttl`
        assert names == {
            "TASK_STATE_TABLE": "test-TaskState",
            "CONNECTIONS_TABLE": "test-Connections",
            "INBOX_TABLE": "test-Inbox",
            "CONVERSATIONS_TABLE": "test-Conversations",
            "SETTINGS_TABLE": "test-Settings",
            "IDEMPOTENCY_TABLE": "test-Idempotency",
        }
        assert sorted(client.list_tables()["TableNames"]) == sorted(names.values())
        keys = {
            name: [
                (k["AttributeName"], k["KeyType"])
                for k in client.describe_table(TableName=name)["Table"]["KeySchema"]
            ]
            for name in names.values()
        }
        assert keys == {
            "test-TaskState": [("PK", "HASH")],
            "test-Connections": [("PK", "HASH")],
            "test-Inbox": [("PK", "HASH"), ("SK", "RANGE")],
            "test-Conversations": [("PK", "HASH"), ("SK", "RANGE")],
            "test-Settings": [("PK", "HASH"), ("SK", "RANGE")],
            "test-Idempotency": [("id", "HASH")],
        }
        (index,) = client.describe_table(TableName="test-Connections")["Table"]["GlobalSecondaryIndexes"]
        assert index["IndexName"] == "byUser"
        assert [(k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]] == [
            ("userId", "HASH"),
            ("connectedAt", "RANGE"),
        ]
        assert index["Projection"] == {"ProjectionType": "ALL"}
        ttl = {
            name: client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            for name in names.values()
        }
        assert all(d == {"TimeToLiveStatus": "ENABLED", "AttributeName": "ttl"} for d in ttl.values()), ttl


def test_create_tables_with_exist_ok_keeps_existing_tables() -> None:
    # Given tables already created and holding an item
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client, TEMPLATE, "test")
        client.put_item(TableName="test-TaskState", Item={"PK": {"S": "USER#1"}})

        # When the tables are created again with exist_ok
        create_tables(client, TEMPLATE, "test", exist_ok=True)

        # Then nothing is lost and nothing fails
        assert client.get_item(TableName="test-TaskState", Key={"PK": {"S": "USER#1"}})["Item"]


def test_create_tables_refuses_existing_tables_by_default() -> None:
    # Given tables already created
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client, TEMPLATE, "test")

        # When they are created again without exist_ok
        # Then DynamoDB's error surfaces
        with pytest.raises(client.exceptions.ResourceInUseException):
            create_tables(client, TEMPLATE, "test")


def test_load_template_names_a_missing_file(tmp_path: Path) -> None:
    # Given a path where no template exists
    missing = tmp_path / "nope.yaml"

    # When it is loaded
    with pytest.raises(TemplateError) as error:
        load_template(missing)

    # Then the error names the file
    assert str(missing) in str(error.value)


def test_load_template_names_a_file_that_is_not_yaml(tmp_path: Path) -> None:
    # Given a file that is not YAML
    broken = tmp_path / "broken.yaml"
    broken.write_text("Resources: [unclosed\n", encoding="utf-8")

    # When it is loaded
    with pytest.raises(TemplateError) as error:
        load_template(broken)

    # Then the error names the file
    assert str(broken) in str(error.value)


def test_load_template_turns_short_tags_into_long_form(tmp_path: Path) -> None:
    # Given a template using every short-form tag
    path = tmp_path / "template.yaml"
    path.write_text(
        """
Conditions:
  C: !And [!Equals [!Ref P, "x"], !Not [!Or [!Condition D, !Equals [a, b]]]]
Resources:
  R:
    Type: T
    Version: 2012-10-17
    Properties:
      Ref: !Ref X
      SubScalar: !Sub "${X}-y"
      SubList: !Sub ["${A}", {A: !Ref X}]
      GetAttDotted: !GetAtt Db.Endpoint.Address
      GetAttList: !GetAtt [Db, Arn]
      Join: !Join [",", [a, b]]
      Select: !Select [0, !GetAZs ""]
      Split: !Split [",", "a,b"]
      If: !If [C, 1, !Ref AWS::NoValue]
      FindInMap: !FindInMap [M, K, V]
      Base64: !Base64 text
      Cidr: !Cidr [10.0.0.0/16, 2, 8]
      ImportValue: !ImportValue exported
""",
        encoding="utf-8",
    )

    # When it is loaded
    template = load_template(path)

    # Then each tag is its long form and dates stay strings
    assert template["Conditions"]["C"] == {
        "Fn::And": [
            {"Fn::Equals": [{"Ref": "P"}, "x"]},
            {"Fn::Not": [{"Fn::Or": [{"Condition": "D"}, {"Fn::Equals": ["a", "b"]}]}]},
        ]
    }
    assert template["Resources"]["R"]["Version"] == "2012-10-17"
    assert template["Resources"]["R"]["Properties"] == {
        "Ref": {"Ref": "X"},
        "SubScalar": {"Fn::Sub": "${X}-y"},
        "SubList": {"Fn::Sub": ["${A}", {"A": {"Ref": "X"}}]},
        "GetAttDotted": {"Fn::GetAtt": ["Db", "Endpoint.Address"]},
        "GetAttList": {"Fn::GetAtt": ["Db", "Arn"]},
        "Join": {"Fn::Join": [",", ["a", "b"]]},
        "Select": {"Fn::Select": [0, {"Fn::GetAZs": ""}]},
        "Split": {"Fn::Split": [",", "a,b"]},
        "If": {"Fn::If": ["C", 1, {"Ref": "AWS::NoValue"}]},
        "FindInMap": {"Fn::FindInMap": ["M", "K", "V"]},
        "Base64": {"Fn::Base64": "text"},
        "Cidr": {"Fn::Cidr": ["10.0.0.0/16", 2, 8]},
        "ImportValue": {"Fn::ImportValue": "exported"},
    }


def test_table_without_an_environment_variable_is_rejected() -> None:
    # Given a template whose table no function is told about
    template = {
        "Globals": {"Function": {"Environment": {"Variables": {}}}},
        "Resources": {"OrphanTable": {"Type": "AWS::DynamoDB::Table", "Properties": {}}},
    }

    # When its tables are read
    with pytest.raises(TemplateError) as error:
        table_definitions(template)

    # Then the error names the table
    assert "OrphanTable" in str(error.value)


def test_function_definitions_merge_globals_with_the_function() -> None:
    # Given the repository template
    # When its functions are read
    functions = function_definitions(TEMPLATE)

    # Then each carries the Globals environment and handler, and its own overrides win
    assert set(functions) == set(FUNCTIONS)
    watchdog = functions["WatchdogFunction"]
    assert (watchdog.code_uri, watchdog.handler, watchdog.timeout, watchdog.memory) == (
        "functions/watchdog/",
        "app.lambda_handler",
        60,
        256,
    )
    assert watchdog.environment["TASK_STATE_TABLE"] == {"Ref": "TaskStateTable"}
    assert watchdog.events["Every5Minutes"]["Type"] == "Schedule"


# --------------------------------------------------------------------------------------------------------
# Warm windows: the schedule group, the role Scheduler invokes with, and who may touch either
# --------------------------------------------------------------------------------------------------------


def _statements_granting(action: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (logical_id, statement)
        for logical_id, statement in _iam_statements()
        if statement.get("Effect") == "Allow" and action in _as_list(statement.get("Action"))
    ]


def test_wake_schedules_live_in_a_group_of_the_stack() -> None:
    # Given the schedule group the warm windows write to
    group = RESOURCES["WakeScheduleGroup"]

    # Then it is the stack's own, and the HTTP API is told its name and what its schedules invoke
    assert group["Type"] == "AWS::Scheduler::ScheduleGroup"
    assert _sub_text(group["Properties"]["Name"]) == "${AWS::StackName}-wake"
    env = _properties("HttpApiFunction")["Environment"]["Variables"]
    assert env["WAKE_SCHEDULE_GROUP"] == {"Ref": "WakeScheduleGroup"}
    assert env["WAKE_FUNCTION_ARN"] == {"Fn::GetAtt": ["WakeFunction", "Arn"]}
    assert env["WAKE_SCHEDULER_ROLE_ARN"] == {"Fn::GetAtt": ["WakeSchedulerRole", "Arn"]}


def test_only_scheduler_of_this_account_and_group_may_assume_the_wake_role() -> None:
    # Given the role schedules invoke their target with
    trust = _properties("WakeSchedulerRole")["AssumeRolePolicyDocument"]["Statement"]

    # Then only EventBridge Scheduler, for this account's schedules in the wake group, may assume it
    assert len(trust) == 1
    assert trust[0]["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust[0]["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    source = _sub_text(trust[0]["Condition"]["ArnLike"]["aws:SourceArn"])
    assert source.endswith(":schedule/${WakeScheduleGroup}/*")


def test_the_wake_role_may_invoke_the_wake_function_and_nothing_else() -> None:
    # Given every statement of the wake role
    granted = [statement for logical_id, statement in _iam_statements() if logical_id == "WakeSchedulerRole"]

    # Then it is one: invoke the wake function
    assert granted == [
        {
            "Sid": "InvokeWake",
            "Effect": "Allow",
            "Action": "lambda:InvokeFunction",
            "Resource": {"Fn::GetAtt": ["WakeFunction", "Arn"]},
        }
    ]
    assert "ManagedPolicyArns" not in _properties("WakeSchedulerRole")


@pytest.mark.parametrize(
    "action",
    [
        "scheduler:CreateSchedule",
        "scheduler:UpdateSchedule",
        "scheduler:DeleteSchedule",
        "scheduler:GetSchedule",
    ],
)
def test_only_the_http_api_manages_schedules_and_only_in_the_wake_group(action: str) -> None:
    # Given the statements granting a schedule-changing action
    granted = _statements_granting(action)

    # Then only the HTTP API has it, on the schedules of the wake group only
    assert [logical_id for logical_id, _ in granted] == ["HttpApiFunction"]
    resources = [_sub_text(r) for r in _as_list(granted[0][1]["Resource"])]
    assert resources == [
        "arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:schedule/${WakeScheduleGroup}/*"
    ]


def test_the_http_api_may_pass_only_the_wake_role_and_only_to_scheduler() -> None:
    # Given the HTTP API's PassRole statements
    passing = [s for logical_id, s in _statements_granting("iam:PassRole") if logical_id == "HttpApiFunction"]

    # Then the wake role goes to Scheduler only, and the bridge roles to ECS tasks only
    by_service = {
        s["Condition"]["StringEquals"]["iam:PassedToService"]: [
            _referenced_id(r) for r in _as_list(s["Resource"])
        ]
        for s in passing
    }
    assert by_service == {
        "scheduler.amazonaws.com": ["WakeSchedulerRole"],
        "ecs-tasks.amazonaws.com": ["BridgeTaskRole", "BridgeExecutionRole"],
    }
    assert [logical_id for logical_id, _ in _statements_granting("lambda:InvokeFunction")] == [
        "WakeSchedulerRole"
    ]


def test_the_functions_know_the_task_definitions_size() -> None:
    # Given the task definition and the functions' shared environment
    task = _properties("BridgeTaskDefinition")
    env = globals_environment(TEMPLATE)

    # Then the size they price a warm window with is the task's own
    assert env["TASK_CPU"] == task["Cpu"] == {"Ref": "TaskCpu"}
    assert env["TASK_MEMORY"] == task["Memory"] == {"Ref": "TaskMemory"}
