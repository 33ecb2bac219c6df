"""Read `template.yaml`, the single source of truth, for the tests and the local stack.

The template is parsed with CloudFormation's short-form tags turned into their long form (`!Ref X` becomes
`{"Ref": "X"}`, `!GetAtt A.B` becomes `{"Fn::GetAtt": ["A", "B"]}`, ...), so callers walk plain data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

DEFAULT_TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "template.yaml"

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class TemplateError(Exception):
    """The template is missing, unreadable or not shaped as this code expects."""


class _CloudFormationLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation short-form intrinsic function tags."""


# CloudFormation reads unquoted dates (`Version: 2012-10-17`) as strings, not timestamps.
_CloudFormationLoader.yaml_implicit_resolvers = {
    first_char: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
    for first_char, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_node(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    raise yaml.constructor.ConstructorError(
        None, None, f"unexpected node {type(node).__name__}", node.start_mark
    )


def _long_form(key: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Any]]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        return {key: _construct_node(loader, node)}

    return construct


def _construct_get_att(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    value = _construct_node(loader, node)
    if isinstance(value, str):
        # Only the first dot separates resource from attribute: `!GetAtt Db.Endpoint.Address`.
        resource, dot, attribute = value.partition(".")
        if not dot or not resource or not attribute:
            raise yaml.constructor.ConstructorError(
                None, None, f"!GetAtt needs Resource.Attribute, got {value!r}", node.start_mark
            )
        return {"Fn::GetAtt": [resource, attribute]}
    return {"Fn::GetAtt": value}


_SHORT_TAGS: dict[str, str] = {
    "!Ref": "Ref",
    "!Condition": "Condition",
    "!Sub": "Fn::Sub",
    "!Join": "Fn::Join",
    "!Select": "Fn::Select",
    "!Split": "Fn::Split",
    "!If": "Fn::If",
    "!Equals": "Fn::Equals",
    "!Not": "Fn::Not",
    "!And": "Fn::And",
    "!Or": "Fn::Or",
    "!FindInMap": "Fn::FindInMap",
    "!Base64": "Fn::Base64",
    "!Cidr": "Fn::Cidr",
    "!GetAZs": "Fn::GetAZs",
    "!ImportValue": "Fn::ImportValue",
    "!Transform": "Fn::Transform",
    "!Length": "Fn::Length",
    "!ToJsonString": "Fn::ToJsonString",
}

for _tag, _key in _SHORT_TAGS.items():
    _CloudFormationLoader.add_constructor(_tag, _long_form(_key))
_CloudFormationLoader.add_constructor("!GetAtt", _construct_get_att)


def load_template(path: Path | None = None) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template (default: the repository's template.yaml) into plain data."""
    template_path = path if path is not None else DEFAULT_TEMPLATE_PATH
    try:
        text = template_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"cannot read template {template_path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise TemplateError(f"cannot read template {template_path}: not UTF-8 ({exc.reason})") from exc
    try:
        document = yaml.load(text, Loader=_CloudFormationLoader)
    except yaml.YAMLError as exc:
        raise TemplateError(f"template {template_path} is not valid YAML: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"template {template_path} has no Resources mapping")
    return document


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """Resources of one type, keyed by logical id."""
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if isinstance(resource, dict) and resource.get("Type") == resource_type
    }


def globals_function(template: dict[str, Any]) -> dict[str, Any]:
    """The `Globals.Function` section (empty when absent)."""
    return _mapping(_mapping(template.get("Globals"), "Globals").get("Function"), "Globals.Function")


def globals_environment(template: dict[str, Any]) -> dict[str, Any]:
    """Environment variables every function gets from `Globals.Function`, values left as intrinsics."""
    environment = _mapping(globals_function(template).get("Environment"), "Globals.Function.Environment")
    return dict(_mapping(environment.get("Variables"), "Globals.Function.Environment.Variables"))


# --------------------------------------------------------------------------------------------------------
# DynamoDB tables
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableDefinition:
    """One DynamoDB table as declared in the template, and the variable that carries its name."""

    logical_id: str
    env_var: str
    key_schema: tuple[dict[str, str], ...]
    attribute_definitions: tuple[dict[str, str], ...]
    global_secondary_indexes: tuple[dict[str, Any], ...]
    ttl_attribute: str | None

    @property
    def short_name(self) -> str:
        """The logical id without its `Table` suffix (`TaskStateTable` -> `TaskState`)."""
        return self.logical_id.removesuffix("Table")

    def table_name(self, prefix: str) -> str:
        """Physical table name under a prefix, mirroring `${AWS::StackName}-<Name>`."""
        return f"{prefix}-{self.short_name}"


def table_definitions(template: dict[str, Any]) -> dict[str, TableDefinition]:
    """Every AWS::DynamoDB::Table, keyed by the Globals environment variable that names it."""
    environment = globals_environment(template)
    tables: dict[str, TableDefinition] = {}
    for logical_id, resource in resources_of_type(template, "AWS::DynamoDB::Table").items():
        properties = _mapping(resource.get("Properties"), f"{logical_id}.Properties")
        env_vars = [name for name, value in environment.items() if value == {"Ref": logical_id}]
        if len(env_vars) != 1:
            found = ", ".join(env_vars) if env_vars else "none"
            raise TemplateError(
                f"table {logical_id} needs exactly one variable in Globals.Function.Environment.Variables "
                f"set to !Ref {logical_id} (found: {found})"
            )
        ttl = _mapping(properties.get("TimeToLiveSpecification"), f"{logical_id}.TimeToLiveSpecification")
        tables[env_vars[0]] = TableDefinition(
            logical_id=logical_id,
            env_var=env_vars[0],
            key_schema=_string_records(properties.get("KeySchema"), f"{logical_id}.KeySchema"),
            attribute_definitions=_string_records(
                properties.get("AttributeDefinitions"), f"{logical_id}.AttributeDefinitions"
            ),
            global_secondary_indexes=tuple(
                _global_secondary_index(index, f"{logical_id}.GlobalSecondaryIndexes")
                for index in _sequence(properties.get("GlobalSecondaryIndexes"), logical_id)
            ),
            ttl_attribute=_literal_str(ttl["AttributeName"], f"{logical_id}.TimeToLiveSpecification")
            if _is_true(ttl.get("Enabled"))
            else None,
        )
    return tables


def create_tables(
    dynamodb_client: DynamoDBClient, template: dict[str, Any], prefix: str, *, exist_ok: bool = False
) -> dict[str, str]:
    """Create every table of the template (on-demand, with its indexes and TTL); return {env var: name}.

    With `exist_ok`, tables that already exist are left as they are (a restarted local stack).
    """
    names: dict[str, str] = {}
    for env_var, table in table_definitions(template).items():
        name = table.table_name(prefix)
        names[env_var] = name
        request: dict[str, Any] = {
            "TableName": name,
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": list(table.key_schema),
            "AttributeDefinitions": list(table.attribute_definitions),
        }
        if table.global_secondary_indexes:
            request["GlobalSecondaryIndexes"] = list(table.global_secondary_indexes)
        try:
            dynamodb_client.create_table(**request)
        except dynamodb_client.exceptions.ResourceInUseException:
            if not exist_ok:
                raise
            continue
        dynamodb_client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
        if table.ttl_attribute is not None:
            dynamodb_client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
            )
    return names


# --------------------------------------------------------------------------------------------------------
# Functions
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionDefinition:
    """One AWS::Serverless::Function with Globals applied; intrinsic values are left for the caller."""

    logical_id: str
    code_uri: str
    handler: str
    environment: dict[str, Any]
    timeout: int
    memory: int
    events: dict[str, Any]


def function_definitions(template: dict[str, Any]) -> dict[str, FunctionDefinition]:
    """Every AWS::Serverless::Function, keyed by logical id, with `Globals.Function` merged in."""
    defaults = globals_function(template)
    default_environment = globals_environment(template)
    functions: dict[str, FunctionDefinition] = {}
    for logical_id, resource in resources_of_type(template, "AWS::Serverless::Function").items():
        properties = _mapping(resource.get("Properties"), f"{logical_id}.Properties")
        merged = {**defaults, **properties}
        own_environment = _mapping(properties.get("Environment"), f"{logical_id}.Environment")
        own_variables = _mapping(own_environment.get("Variables"), f"{logical_id}.Environment.Variables")
        functions[logical_id] = FunctionDefinition(
            logical_id=logical_id,
            code_uri=_literal_str(_required(merged, "CodeUri", logical_id), f"{logical_id}.CodeUri"),
            handler=_literal_str(_required(merged, "Handler", logical_id), f"{logical_id}.Handler"),
            environment={**default_environment, **own_variables},
            timeout=_literal_int(merged.get("Timeout", 3), f"{logical_id}.Timeout"),
            memory=_literal_int(merged.get("MemorySize", 128), f"{logical_id}.MemorySize"),
            events=dict(_mapping(properties.get("Events"), f"{logical_id}.Events")),
        )
    return functions


# --------------------------------------------------------------------------------------------------------
# Shape checks: fail with the template path of the problem rather than a KeyError deep inside a caller.
# --------------------------------------------------------------------------------------------------------


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TemplateError(f"{where} must be a mapping, got {type(value).__name__}")
    return value


def _sequence(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TemplateError(f"{where} must be a list, got {type(value).__name__}")
    return value


def _required(properties: dict[str, Any], key: str, logical_id: str) -> Any:
    if key not in properties:
        raise TemplateError(f"{logical_id} has no {key} (neither its own nor in Globals.Function)")
    return properties[key]


def _literal_str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise TemplateError(f"{where} must be a literal string, got {value!r}")
    return value


def _literal_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TemplateError(f"{where} must be a literal integer, got {value!r}")
    try:
        return int(value)
    except ValueError as exc:
        raise TemplateError(f"{where} must be a literal integer, got {value!r}") from exc


def _is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _string_records(value: Any, where: str) -> tuple[dict[str, str], ...]:
    records = []
    for item in _sequence(value, where):
        record = _mapping(item, where)
        records.append({key: _literal_str(field, f"{where}.{key}") for key, field in record.items()})
    if not records:
        raise TemplateError(f"{where} is missing or empty")
    return tuple(records)


def _global_secondary_index(value: Any, where: str) -> dict[str, Any]:
    index = _mapping(value, where)
    name = _literal_str(index.get("IndexName"), f"{where}.IndexName")
    projection = _mapping(index.get("Projection"), f"{where}.{name}.Projection")
    if not projection:
        raise TemplateError(f"{where}.{name} has no Projection")
    return {
        "IndexName": name,
        "KeySchema": list(_string_records(index.get("KeySchema"), f"{where}.{name}.KeySchema")),
        "Projection": dict(projection),
    }
