"""Evaluate the template's intrinsic functions the way CloudFormation would for a stack named `local`.

Physical ids come from the local stack (table names, the user pool and client moto created, the ids of
the two APIs, ...); everything else follows CloudFormation's rules: `Ref` to a parameter is its value
(default or override, checked against AllowedValues/AllowedPattern), `Fn::Sub` substitutes `${X}` and
`${X.Attr}`, conditions are evaluated, `AWS::NoValue` drops the key. Finally every URL on an API's
`execute-api` host is pointed at the loopback port serving that API, so product code needs no local
branch: it runs locally exactly as deployed, with only the endpoints it is given changed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from local.template import TemplateError, resources_of_type

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
URL_SUFFIX = "amazonaws.com"

_NO_VALUE = object()
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


_HASHED_ID_PREFIXES = {"AWS::EC2::Subnet": "subnet-", "AWS::EC2::SecurityGroup": "sg-"}
"""Resource types whose id is a prefix and 17 hex digits, as EC2's are."""


def _checked_override(name: str, value: str, spec: dict[str, Any]) -> str:
    """An override's value, refused as CloudFormation would when outside AllowedValues/AllowedPattern."""
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(v) for v in allowed]:
        raise TemplateError(f"parameter {name}={value!r} is not one of {', '.join(map(str, allowed))}")
    pattern = spec.get("AllowedPattern")
    if pattern and not re.fullmatch(pattern, value):
        raise TemplateError(f"parameter {name}={value!r} does not match {pattern}")
    return value


def api_id(logical_id: str) -> str:
    """A stable, API Gateway shaped id (10 lower-case alphanumerics) for an API resource."""
    digest = hashlib.sha256(logical_id.encode()).hexdigest()
    return digest[:10]


@dataclass
class Resolver:
    """Resolves template values for one local stack."""

    template: dict[str, Any]
    stack_name: str
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    physical_ids: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    api_endpoints: dict[str, tuple[str, str]] = field(default_factory=dict)
    """api id → (http base, ws base) of the loopback server standing in for it."""

    def __post_init__(self) -> None:
        self.parameters = self._parameter_values()
        self.conditions: dict[str, bool] = {}

    # ------------------------------------------------------------------------------------ parameters

    def _parameter_values(self) -> dict[str, str]:
        declared = self.template.get("Parameters") or {}
        unknown = sorted(set(self.parameter_overrides) - set(declared))
        if unknown:
            raise TemplateError(f"unknown template parameter(s): {', '.join(unknown)}")
        values: dict[str, str] = {}
        for name, spec in declared.items():
            if name in self.parameter_overrides:
                values[name] = _checked_override(name, str(self.parameter_overrides[name]), spec)
            elif "Default" in spec:
                values[name] = str(spec["Default"])
            else:
                # Parameters without a default (the image URI) mean nothing locally: the bridge runs as
                # a process. An empty value keeps them visibly unset.
                values[name] = ""
        return values

    # ------------------------------------------------------------------------------------ physical ids

    def physical_id(self, logical_id: str) -> str:
        """What `Ref` returns for a resource."""
        if logical_id not in self.physical_ids:
            resource = self.template["Resources"].get(logical_id)
            if not isinstance(resource, dict):
                raise TemplateError(f"Ref to unknown resource {logical_id}")
            self.physical_ids[logical_id] = self._new_physical_id(logical_id, resource)
        return self.physical_ids[logical_id]

    def _new_physical_id(self, logical_id: str, resource: dict[str, Any]) -> str:
        kind = resource.get("Type", "")
        properties = resource.get("Properties") or {}
        if kind == "AWS::DynamoDB::Table":
            return f"{self.stack_name}-{logical_id.removesuffix('Table')}"
        if kind == "AWS::S3::Bucket":
            name = str(self.resolve(properties["BucketName"])) if "BucketName" in properties else ""
            return name or f"{self.stack_name}-{logical_id}".lower()
        if kind in ("AWS::ApiGatewayV2::Api", "AWS::Serverless::HttpApi", "AWS::Serverless::Api"):
            return api_id(logical_id)
        if kind == "AWS::Scheduler::ScheduleGroup" and "Name" in properties:
            return str(self.resolve(properties["Name"]))
        if kind == "AWS::ECS::TaskDefinition":
            family = self.resolve(properties.get("Family")) or f"{self.stack_name}-{logical_id}"
            return f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:1"
        if kind in _HASHED_ID_PREFIXES:
            return _HASHED_ID_PREFIXES[kind] + hashlib.sha256(logical_id.encode()).hexdigest()[:17]
        return f"{self.stack_name}-{logical_id}"

    def attribute(self, logical_id: str, name: str) -> str:
        """What `Fn::GetAtt` returns."""
        if (logical_id, name) in self.attributes:
            return self.attributes[(logical_id, name)]
        resource = self.template["Resources"].get(logical_id)
        if not isinstance(resource, dict):
            raise TemplateError(f"GetAtt on unknown resource {logical_id}")
        kind = resource.get("Type", "")
        ref = self.physical_id(logical_id)
        if name != "Arn":
            return ref
        if kind == "AWS::DynamoDB::Table":
            return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{ref}"
        if kind == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{ref}"
        if kind == "AWS::ECS::Cluster":
            return f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{ref}"
        if kind == "AWS::Serverless::Function":
            return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{ref}"
        return f"arn:aws:local:{REGION}:{ACCOUNT}:{logical_id}/{ref}"

    # ------------------------------------------------------------------------------------ evaluation

    def condition(self, name: str) -> bool:
        """The value of a named condition."""
        if name not in self.conditions:
            spec = (self.template.get("Conditions") or {}).get(name)
            if spec is None:
                raise TemplateError(f"unknown condition {name}")
            self.conditions[name] = bool(self._condition_value(spec))
        return self.conditions[name]

    def _condition_value(self, spec: Any) -> bool:
        if isinstance(spec, dict) and len(spec) == 1:
            ((key, args),) = spec.items()
            if key == "Fn::Equals":
                left, right = (self.resolve(a) for a in args)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self._condition_value(args[0])
            if key == "Fn::And":
                return all(self._condition_value(a) for a in args)
            if key == "Fn::Or":
                return any(self._condition_value(a) for a in args)
            if key == "Condition":
                return self.condition(args)
        raise TemplateError(f"cannot evaluate condition {spec!r}")

    def resolve(self, value: Any) -> Any:
        """A template value with every intrinsic function evaluated and local endpoints substituted."""
        resolved = self._resolve(value)
        return None if resolved is _NO_VALUE else self._localise(resolved)

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self._resolve(v) for v in value]
            return [v for v in items if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, args),) = value.items()
            if key == "Ref" or key.startswith("Fn::"):
                return self._intrinsic(key, args)
        out = {k: self._resolve(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not _NO_VALUE}

    def _intrinsic(self, key: str, args: Any) -> Any:
        evaluate: dict[str, Callable[[Any], Any]] = {
            "Ref": self._ref,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Join": self._join,
            "Fn::Select": self._select,
            "Fn::Split": self._split,
            "Fn::If": self._if,
            "Fn::GetAZs": lambda _: [f"{REGION}a", f"{REGION}b"],
            "Fn::ToJsonString": lambda args: json.dumps(self._resolve(args), separators=(",", ":")),
        }
        if key not in evaluate:
            raise TemplateError(f"the local stack cannot evaluate {key}")
        return evaluate[key](args)

    def _get_att(self, args: Any) -> str:
        resource, attr = args if isinstance(args, list) else str(args).split(".", 1)
        return self.attribute(resource, attr)

    def _join(self, args: Any) -> str:
        separator, items = args
        return str(separator).join(str(v) for v in self._resolve(items))

    def _select(self, args: Any) -> Any:
        index, items = args
        return self._resolve(items)[int(self._resolve(index))]

    def _split(self, args: Any) -> list[str]:
        separator, text = args
        return str(self._resolve(text)).split(separator)

    def _if(self, args: Any) -> Any:
        name, when_true, when_false = args
        return self._resolve(when_true if self.condition(name) else when_false)

    def _ref(self, name: str) -> Any:
        pseudo = {
            "AWS::StackName": self.stack_name,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::URLSuffix": URL_SUFFIX,
            "AWS::Partition": "aws",
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{self.stack_name}/local",
        }
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.physical_id(name)

    def _sub(self, args: Any) -> str:
        text, variables = (args, {}) if isinstance(args, str) else (args[0], args[1])
        values = {k: self._resolve(v) for k, v in variables.items()}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in values:
                return str(values[name])
            if "." in name and not name.startswith("AWS::"):
                resource, attr = name.split(".", 1)
                return self.attribute(resource, attr)
            return str(self._ref(name))

        return _SUB_VARIABLE.sub(substitute, text)

    def _localise(self, value: Any) -> Any:
        if isinstance(value, str):
            for identifier, (http_base, ws_base) in self.api_endpoints.items():
                host = f"{identifier}.execute-api.{REGION}.{URL_SUFFIX}"
                value = value.replace(f"wss://{host}", ws_base).replace(f"https://{host}", http_base)
            return value
        if isinstance(value, list):
            return [self._localise(v) for v in value]
        if isinstance(value, dict):
            return {k: self._localise(v) for k, v in value.items()}
        return value

    def environment(self, variables: Mapping[str, Any]) -> dict[str, str]:
        """An environment block (name → intrinsic) as strings, as Lambda and ECS would set it."""
        out: dict[str, str] = {}
        for name, value in variables.items():
            resolved = self.resolve(value)
            if resolved is not None:
                out[name] = str(resolved)
        return out

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        """Resources of one type (logical id → resource), as the template declares them."""
        return resources_of_type(self.template, kind)
