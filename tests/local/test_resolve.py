"""The local stack's CloudFormation evaluation: what each function and the task would see as configuration."""

from __future__ import annotations

import json
from typing import Any

import pytest

from local.functions import FunctionHost
from local.resolve import Resolver, api_id
from local.template import TemplateError
from serverless_openclaw.config import AuthConfig, ControlPlaneConfig
from serverless_openclaw.settings import SUPPORTED_PROVIDERS

WS_HTTP = "http://127.0.0.1:48201"
WS_URL = "ws://127.0.0.1:48201"


@pytest.fixture
def real_template(template: dict[str, Any]) -> dict[str, Any]:
    """The repository's template.yaml (parsed once per session; no test changes it)."""
    return template


def localised(template: dict[str, Any], **overrides: str) -> Resolver:
    """A resolver for stack `local` whose WebSocket API is served on WS_HTTP / WS_URL."""
    return Resolver(
        template,
        "local",
        parameter_overrides=dict(overrides),
        api_endpoints={api_id("WebSocketApi"): (WS_HTTP, WS_URL)},
    )


def task_environment(resolver: Resolver) -> dict[str, str]:
    definition = resolver.template["Resources"]["BridgeTaskDefinition"]["Properties"]
    resolved = resolver.resolve(definition["ContainerDefinitions"][0]["Environment"])
    return {pair["Name"]: pair["Value"] for pair in resolved}


# ---------------------------------------------------------------------------------------------- real template


def test_a_function_gets_the_local_tables_and_the_loopback_management_endpoint(
    real_template: dict[str, Any],
) -> None:
    # Given the template resolved for stack `local`, its WebSocket API served on a loopback port
    resolver = localised(real_template)

    # When the function host builds WsMessageFunction's environment (Globals merged with its own)
    environment = FunctionHost(resolver, {}).functions["WsMessageFunction"].environment

    # Then pushes go to the loopback API, tables carry the stack's name, and Cognito stays as it is
    assert environment["WEBSOCKET_MANAGEMENT_ENDPOINT"] == f"{WS_HTTP}/prod"
    assert environment["TASK_STATE_TABLE"] == "local-TaskState"
    assert environment["CONNECTIONS_TABLE"] == "local-Connections"
    assert environment["INBOX_TABLE"] == "local-Inbox"
    assert environment["IDEMPOTENCY_TABLE"] == "local-Idempotency"
    assert environment["STACK_NAME"] == "local"
    assert environment["COGNITO_ISSUER"].startswith("https://cognito-idp.us-east-1.amazonaws.com/")
    assert environment["AWS_LAMBDA_FUNCTION_NAME"] == "local-WsMessageFunction"
    # Parameter defaults arrive as strings, as Lambda sets them
    assert environment["IDLE_TIMEOUT_MINUTES"] == "15"
    assert environment["LOG_LEVEL"] == "INFO"


def test_the_task_definition_points_the_bridge_at_the_loopback_websocket(
    real_template: dict[str, Any],
) -> None:
    # Given the real template, resolved with the WebSocket API on loopback
    resolver = localised(real_template)

    # When the bridge container's environment is resolved
    environment = task_environment(resolver)

    # Then both the wss:// and https:// URLs of the API are the loopback ones, and the rest is the stack's
    assert environment["WEBSOCKET_URL"] == f"{WS_URL}/prod"
    assert environment["WEBSOCKET_MANAGEMENT_ENDPOINT"] == f"{WS_HTTP}/prod"
    assert environment["SECRETS_PREFIX"] == "/local/secrets"
    assert environment["TASK_STATE_TABLE"] == "local-TaskState"
    assert environment["DATA_BUCKET"] == resolver.physical_id("DataBucket")
    assert environment["MODEL_ID"] == ""
    assert "amazonaws.com" not in " ".join(environment.values())


def test_the_task_subnets_are_two_distinct_subnet_ids_joined_by_a_comma(
    real_template: dict[str, Any],
) -> None:
    # Given the real template
    resolver = localised(real_template)

    # When the Globals' TASK_SUBNETS (a !Join of two !Ref) is resolved
    subnets = resolver.environment(
        {"TASK_SUBNETS": real_template["Globals"]["Function"]["Environment"]["Variables"]["TASK_SUBNETS"]}
    )["TASK_SUBNETS"].split(",")

    # Then it names two different subnets
    assert len(subnets) == 2
    assert len(set(subnets)) == 2
    assert all(s.startswith("subnet-") for s in subnets)


def test_a_parameter_override_reaches_the_functions(real_template: dict[str, Any]) -> None:
    # Given an override of a Number parameter and of an AllowedValues parameter
    resolver = localised(real_template, IdleTimeoutMinutes="30", ModelProvider="offline")

    # When the function and task environments are built
    environment = FunctionHost(resolver, {}).functions["WatchdogFunction"].environment

    # Then they carry the overridden values
    assert environment["IDLE_TIMEOUT_MINUTES"] == "30"
    assert task_environment(resolver)["MODEL_PROVIDER"] == "offline"


def test_the_stack_offers_no_bedrock(real_template: dict[str, Any]) -> None:
    # Given the template (Bedrock is refused: its OpenClaw plugin is not on npm, docs/decisions.md)
    parameters = real_template["Parameters"]
    policies = real_template["Resources"]["BridgeTaskRole"]["Properties"]["Policies"]

    # When the task role is resolved
    statements = localised(real_template).resolve(policies)[0]["PolicyDocument"]["Statement"]

    # Then nothing in it may call Bedrock, no parameter turns it on, and ModelProvider refuses it with a
    # message that says why
    assert None not in statements
    assert not [s for s in statements if "bedrock" in json.dumps(s.get("Action")).lower()]
    assert "EnableBedrock" not in parameters
    model_provider = parameters["ModelProvider"]
    assert model_provider["AllowedValues"] == list(SUPPORTED_PROVIDERS)
    assert "bedrock" not in model_provider["AllowedValues"]
    assert "@openclaw/amazon-bedrock-provider" in model_provider["ConstraintDescription"]
    assert "not published on npm" in model_provider["ConstraintDescription"]


def test_the_http_api_authorizer_names_the_user_pool_the_stack_created(real_template: dict[str, Any]) -> None:
    # Given the physical ids moto gave the user pool and its client
    resolver = localised(real_template)
    resolver.physical_ids.update(UserPool="us-east-1_AbCdEf123", UserPoolClient="3n4b5c6d7e8f9g0h")

    # When the HTTP API's JWT configuration is resolved
    auth = resolver.resolve(real_template["Resources"]["HttpApi"]["Properties"]["Auth"])
    jwt_configuration = auth["Authorizers"]["CognitoJwt"]["JwtConfiguration"]

    # Then it expects tokens of that pool and client
    assert jwt_configuration == {
        "issuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEf123",
        "audience": ["3n4b5c6d7e8f9g0h"],
    }


def test_the_cors_origin_is_the_web_origin_parameter(real_template: dict[str, Any]) -> None:
    # Given the web chat served on a loopback port
    resolver = localised(real_template, WebOrigin="http://127.0.0.1:8080")

    # When the HTTP API's CORS configuration is resolved
    cors = resolver.resolve(real_template["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"])

    # Then that origin, and only it, is allowed
    assert cors["AllowOrigins"] == ["http://127.0.0.1:8080"]


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"NoSuchParameter": "1"}, "NoSuchParameter"),
        ({"ModelProvider": "gpt-9"}, "ModelProvider"),
        ({"WebOrigin": "http://localhost:8080/chat"}, "WebOrigin"),
        ({"WebOrigin": "*"}, "WebOrigin"),
        ({"AlarmEmail": "not-an-address"}, "AlarmEmail"),
        ({"LogRetentionDays": "2"}, "LogRetentionDays"),
    ],
)
def test_an_invalid_parameter_override_is_refused_naming_the_parameter(
    real_template: dict[str, Any], overrides: dict[str, str], named: str
) -> None:
    # Given an override CloudFormation would refuse
    # When a resolver is built with it
    # Then it fails at once, naming the parameter, rather than deploying a broken configuration
    with pytest.raises(TemplateError, match=named):
        Resolver(real_template, "local", parameter_overrides=overrides)


def test_valid_overrides_are_accepted(real_template: dict[str, Any]) -> None:
    # Given overrides within AllowedValues / AllowedPattern
    overrides = {
        "WebOrigin": "https://chat.example.com",
        "AlarmEmail": "ops@example.com",
        "LogRetentionDays": "7",
        "AllowSelfSignUp": "true",
    }

    # When the resolver is built
    resolver = Resolver(real_template, "local", parameter_overrides=overrides)

    # Then the values are used, and the conditions built on them follow
    assert resolver.parameters["WebOrigin"] == "https://chat.example.com"
    assert resolver.condition("HasAlarmEmail") is True
    assert resolver.condition("SelfSignUpEnabled") is True
    pool = resolver.resolve(real_template["Resources"]["UserPool"]["Properties"])
    assert pool["AdminCreateUserConfig"] == {"AllowAdminCreateUserOnly": False}


def test_without_an_alarm_email_the_condition_is_false(real_template: dict[str, Any]) -> None:
    # Given the default (empty) AlarmEmail
    resolver = Resolver(real_template, "local")

    # When the condition `!Not [!Equals [!Ref AlarmEmail, ""]]` is evaluated
    # Then no subscription would be created
    assert resolver.condition("HasAlarmEmail") is False


# ---------------------------------------------------------------------------------------------- hand-made


def small_template() -> dict[str, Any]:
    return {
        "Parameters": {
            "Stage": {"Type": "String", "Default": "dev", "AllowedValues": ["dev", "prod"]},
            "Name": {"Type": "String", "Default": "app", "AllowedPattern": "^[a-z]+$"},
            "Image": {"Type": "String"},
        },
        "Conditions": {
            "IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]},
            "IsNotProd": {"Fn::Not": [{"Condition": "IsProd"}]},
            "ProdAndNamed": {"Fn::And": [{"Condition": "IsProd"}, {"Fn::Equals": [{"Ref": "Name"}, "app"]}]},
            "EitherWay": {"Fn::Or": [{"Condition": "IsProd"}, {"Condition": "IsNotProd"}]},
        },
        "Resources": {
            "ItemsTable": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
            "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": {"Fn::Sub": "${Name}-files"}}},
            "Api": {"Type": "AWS::ApiGatewayV2::Api", "Properties": {}},
            "Queue": {"Type": "AWS::SQS::Queue", "Properties": {}},
            "Cluster": {"Type": "AWS::ECS::Cluster", "Properties": {}},
            "Fn": {"Type": "AWS::Serverless::Function", "Properties": {}},
        },
    }


def test_ref_returns_parameters_resources_and_pseudo_parameters() -> None:
    # Given a small template
    resolver = Resolver(small_template(), "demo")

    # When Refs are resolved
    # Then parameters give their default (or an empty value when they have none) ...
    assert resolver.resolve({"Ref": "Stage"}) == "dev"
    assert resolver.resolve({"Ref": "Image"}) == ""
    # ... resources their physical id ...
    assert resolver.resolve({"Ref": "ItemsTable"}) == "demo-Items"
    assert resolver.resolve({"Ref": "Bucket"}) == "app-files"
    assert resolver.resolve({"Ref": "Api"}) == api_id("Api")
    assert resolver.resolve({"Ref": "Queue"}) == "demo-Queue"
    # ... and pseudo parameters what CloudFormation gives in us-east-1
    assert resolver.resolve({"Ref": "AWS::StackName"}) == "demo"
    assert resolver.resolve({"Ref": "AWS::Region"}) == "us-east-1"
    assert resolver.resolve({"Ref": "AWS::AccountId"}) == "123456789012"
    assert resolver.resolve({"Ref": "AWS::Partition"}) == "aws"
    assert resolver.resolve({"Ref": "AWS::URLSuffix"}) == "amazonaws.com"


def test_an_api_id_looks_like_api_gateways_and_is_stable() -> None:
    # Given two resolvers of the same template
    # When they name the same API
    # Then the id is the same 10 lower-case alphanumerics both times (URLs survive restarts)
    first = Resolver(small_template(), "demo").physical_id("Api")
    second = Resolver(small_template(), "demo").physical_id("Api")
    assert first == second
    assert len(first) == 10
    assert first.isalnum()
    assert first == first.lower()


def test_ref_to_an_unknown_resource_is_an_error() -> None:
    # Given a Ref to nothing
    # When it is resolved
    # Then the error names it
    with pytest.raises(TemplateError, match="Missing"):
        Resolver(small_template(), "demo").resolve({"Ref": "Missing"})


def test_get_att_arn_has_the_shape_of_each_service() -> None:
    # Given a small template
    resolver = Resolver(small_template(), "demo")

    # When ARNs are asked for, in the list and the dotted forms
    # Then each has its service's shape
    assert resolver.resolve({"Fn::GetAtt": ["ItemsTable", "Arn"]}) == (
        "arn:aws:dynamodb:us-east-1:123456789012:table/demo-Items"
    )
    assert resolver.resolve({"Fn::GetAtt": "Bucket.Arn"}) == "arn:aws:s3:::app-files"
    assert resolver.resolve({"Fn::GetAtt": ["Cluster", "Arn"]}) == (
        "arn:aws:ecs:us-east-1:123456789012:cluster/demo-Cluster"
    )
    assert resolver.resolve({"Fn::GetAtt": ["Fn", "Arn"]}) == (
        "arn:aws:lambda:us-east-1:123456789012:function:demo-Fn"
    )


def test_sub_substitutes_refs_attributes_variables_and_keeps_escaped_literals() -> None:
    # Given a small template
    resolver = Resolver(small_template(), "demo")

    # When Fn::Sub strings are resolved
    # Then ${X} is a Ref, ${X.Attr} a GetAtt, ${!X} the literal ${X}, and the variables map wins
    assert resolver.resolve({"Fn::Sub": "${AWS::StackName}-${Stage}"}) == "demo-dev"
    assert resolver.resolve({"Fn::Sub": "${ItemsTable.Arn}/index/*"}) == (
        "arn:aws:dynamodb:us-east-1:123456789012:table/demo-Items/index/*"
    )
    assert resolver.resolve({"Fn::Sub": "echo ${!HOME} in ${Stage}"}) == "echo ${HOME} in dev"
    assert resolver.resolve({"Fn::Sub": ["${Greeting}, ${Name}", {"Greeting": "hello", "Name": "ann"}]}) == (
        "hello, ann"
    )
    assert resolver.resolve({"Fn::Sub": ["${Where}", {"Where": {"Ref": "Bucket"}}]}) == "app-files"


def test_join_select_split_and_getazs() -> None:
    # Given a small template
    resolver = Resolver(small_template(), "demo")

    # When list functions are resolved
    # Then they behave as CloudFormation's
    assert resolver.resolve({"Fn::Join": [",", [{"Ref": "Stage"}, "b", {"Ref": "ItemsTable"}]]}) == (
        "dev,b,demo-Items"
    )
    assert resolver.resolve({"Fn::Join": ["", []]}) == ""
    assert resolver.resolve({"Fn::Select": [1, {"Fn::Split": ["-", "a-b-c"]}]}) == "b"
    assert resolver.resolve({"Fn::Select": [0, {"Fn::GetAZs": ""}]}) == "us-east-1a"


def test_if_follows_conditions_and_novalue_drops_the_key_or_item() -> None:
    # Given a template whose Stage is dev (IsProd false) and one whose Stage is prod
    dev = Resolver(small_template(), "demo")
    prod = Resolver(small_template(), "demo", parameter_overrides={"Stage": "prod"})
    value = {
        "Size": {"Fn::If": ["IsProd", "large", "small"]},
        "Alarm": {"Fn::If": ["IsProd", "on", {"Ref": "AWS::NoValue"}]},
        "Items": ["a", {"Fn::If": ["IsNotProd", {"Ref": "AWS::NoValue"}, "b"]}],
    }

    # When the same value is resolved in both
    # Then the branches follow the conditions, and AWS::NoValue removes the key (or list item) entirely
    assert dev.resolve(value) == {"Size": "small", "Items": ["a"]}
    assert prod.resolve(value) == {"Size": "large", "Alarm": "on", "Items": ["a", "b"]}
    assert dev.resolve({"Ref": "AWS::NoValue"}) is None
    assert dev.environment({"KEEP": "x", "DROP": {"Fn::If": ["IsProd", "y", {"Ref": "AWS::NoValue"}]}}) == {
        "KEEP": "x"
    }


def test_conditions_combine_with_and_or_not() -> None:
    # Given Stage=prod
    resolver = Resolver(small_template(), "demo", parameter_overrides={"Stage": "prod"})

    # When the combined conditions are evaluated
    # Then they follow boolean logic
    assert resolver.condition("IsProd") is True
    assert resolver.condition("IsNotProd") is False
    assert resolver.condition("ProdAndNamed") is True
    assert resolver.condition("EitherWay") is True
    with pytest.raises(TemplateError, match="NoSuchCondition"):
        resolver.condition("NoSuchCondition")


def test_overrides_are_checked_against_allowed_values_and_patterns() -> None:
    # Given the small template's constraints
    # When an override breaks one
    # Then the resolver refuses it; when it respects them, it is used
    with pytest.raises(TemplateError, match="Stage='staging' is not one of dev, prod"):
        Resolver(small_template(), "demo", parameter_overrides={"Stage": "staging"})
    with pytest.raises(TemplateError, match="Name='App1' does not match"):
        Resolver(small_template(), "demo", parameter_overrides={"Name": "App1"})
    with pytest.raises(TemplateError, match="unknown template parameter.*Colour"):
        Resolver(small_template(), "demo", parameter_overrides={"Colour": "red"})
    assert Resolver(small_template(), "demo", parameter_overrides={"Name": "web"}).resolve(
        {"Ref": "Bucket"}
    ) == ("web-files")


def test_parameters_take_the_override_then_the_default_and_only_overrides_are_checked() -> None:
    # Given parameters with numeric values and defaults outside their own constraints
    template = {
        "Parameters": {
            "Days": {"Type": "Number", "Default": 14, "AllowedValues": [7, 14, 30]},
            "Odd": {"Type": "String", "Default": "x", "AllowedValues": ["a", "b"]},
            "Loose": {"Type": "String", "Default": "UPPER", "AllowedPattern": "^[a-z]*$"},
            "Free": {"Type": "String", "AllowedPattern": ""},
        },
        "Resources": {},
    }

    # When resolvers are built with and without overrides
    defaults = Resolver(template, "demo").parameters
    overridden = Resolver(template, "demo", parameter_overrides={"Days": "7", "Free": "Anything at all"})

    # Then values are strings, defaults are taken as written, and overrides are checked
    assert defaults == {"Days": "14", "Odd": "x", "Loose": "UPPER", "Free": ""}
    assert overridden.parameters == {"Days": "7", "Odd": "x", "Loose": "UPPER", "Free": "Anything at all"}
    with pytest.raises(TemplateError, match=r"parameter Days='8' is not one of 7, 14, 30"):
        Resolver(template, "demo", parameter_overrides={"Days": "8"})
    with pytest.raises(TemplateError, match=r"parameter Loose='UP' does not match \^\[a-z\]\*\$"):
        Resolver(template, "demo", parameter_overrides={"Loose": "UP"})
    with pytest.raises(TemplateError, match=r"unknown template parameter\(s\): A, B$"):
        Resolver(template, "demo", parameter_overrides={"B": "1", "A": "2"})


def test_each_kind_of_resource_gets_the_physical_id_cloudformation_would_give() -> None:
    # Given one resource of every kind the local stack names specially
    template = small_template()
    template["Resources"].update(
        {
            "Unnamed": {"Type": "AWS::S3::Bucket"},
            "BlankName": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": {"Ref": "Image"}}},
            "HttpApi": {"Type": "AWS::Serverless::HttpApi"},
            "RestApi": {"Type": "AWS::Serverless::Api"},
            "Family": {
                "Type": "AWS::ECS::TaskDefinition",
                "Properties": {"Family": {"Fn::Sub": "${Name}-agent"}},
            },
            "Anonymous": {"Type": "AWS::ECS::TaskDefinition"},
            "SubnetA": {"Type": "AWS::EC2::Subnet"},
            "Firewall": {"Type": "AWS::EC2::SecurityGroup"},
            "Shared": {"Type": "AWS::SQS::Queue"},
        }
    )
    resolver = Resolver(template, "Demo", physical_ids={"Shared": "given-elsewhere"})

    # When each is referenced
    ids = {name: resolver.physical_id(name) for name in template["Resources"]}

    # Then each follows its service's naming, and an id known already is kept
    assert ids["Unnamed"] == "demo-unnamed" and ids["BlankName"] == "demo-blankname"
    assert ids["HttpApi"] == api_id("HttpApi") and ids["RestApi"] == api_id("RestApi")
    assert ids["Family"] == "arn:aws:ecs:us-east-1:123456789012:task-definition/app-agent:1"
    assert ids["Anonymous"] == "arn:aws:ecs:us-east-1:123456789012:task-definition/Demo-Anonymous:1"
    assert ids["SubnetA"].startswith("subnet-") and len(ids["SubnetA"]) == len("subnet-") + 17
    assert ids["Firewall"].startswith("sg-") and len(ids["Firewall"]) == len("sg-") + 17
    assert int(ids["SubnetA"][7:], 16) >= 0 and ids["SubnetA"][7:] != ids["Firewall"][3:]
    assert ids["Shared"] == "given-elsewhere" and ids["Queue"] == "Demo-Queue"
    assert ids["ItemsTable"] == "Demo-Items" and ids["Bucket"] == "app-files"
    assert resolver.physical_ids == ids


def test_an_intrinsic_the_local_stack_cannot_evaluate_is_named() -> None:
    # Given a function the local stack does not implement
    # When it is resolved
    # Then the error names it instead of passing the dict on as a value
    with pytest.raises(TemplateError, match="Fn::ImportValue"):
        Resolver(small_template(), "demo").resolve({"Fn::ImportValue": "shared-vpc"})


def test_every_url_of_a_localised_api_points_at_its_loopback_server() -> None:
    # Given the API served on loopback and a second API that is not
    template = small_template()
    template["Resources"]["OtherApi"] = {"Type": "AWS::ApiGatewayV2::Api", "Properties": {}}
    resolver = Resolver(
        template, "demo", api_endpoints={api_id("Api"): ("http://127.0.0.1:9001", "ws://127.0.0.1:9001")}
    )

    # When URLs of both APIs are resolved, alone or inside structures
    value = {
        "https": {"Fn::Sub": "https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/prod"},
        "wss": [{"Fn::Sub": "wss://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/prod"}],
        "other": {"Fn::Sub": "https://${OtherApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/prod"},
    }
    resolved = resolver.resolve(value)

    # Then the served API's URLs are the loopback ones and the other API's are left alone
    assert resolved["https"] == "http://127.0.0.1:9001/prod"
    assert resolved["wss"] == ["ws://127.0.0.1:9001/prod"]
    assert resolved["other"] == f"https://{api_id('OtherApi')}.execute-api.us-east-1.amazonaws.com/prod"


def test_every_function_gets_the_configuration_it_reads_at_start_up(real_template: dict[str, Any]) -> None:
    # Given every function's environment as the local stack builds it from the template
    functions = FunctionHost(localised(real_template), {}).functions

    # When each reads its configuration, as its module does at start-up
    configs = {name: ControlPlaneConfig.from_env(fn.environment) for name, fn in functions.items()}

    # Then none is missing a variable, and each knows where the bot's token and webhook secret live
    assert set(configs) >= {"WsMessageFunction", "TelegramWebhookFunction", "WatchdogFunction"}
    for config in configs.values():
        assert config.telegram.token_parameter == "/local/secrets/telegram-bot-token"
        assert config.telegram.secret_parameter == "/local/secrets/telegram-webhook-secret"
    assert AuthConfig.from_env(functions["WsConnectFunction"].environment).client_id
