"""A rehearsal of `make deploy`: moto stands in for AWS, a recording runner for `sam` and the image builder.

Everything scripts/deploy.py does through boto3 (STS, ECR, SSM, Cognito, S3, CloudFront, CloudFormation)
runs against moto in-process. The programs it runs are played by `Rehearsal`, which records every argument
list (and what went to its stdin) and does, in moto, what the real program would have done to AWS: the
builder's push puts an image into the ECR repository, `sam deploy` creates or updates the stack with the
parameters it was given and the outputs the real template declares. The builder refuses, as bridge/Dockerfile
does, a context whose lockfile does not lock the OPENCLAW_VERSION it is given; npm resolving a new OpenClaw
(`--package-lock-only`) rewrites the project's package.json and lockfile for that version, offline. Shared by
tests/unit/test_deploy.py, tests/unit/test_openclaw_pin.py and bench/bench_deploy.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto.cloudformation.models import Event, cloudformation_backends

from scripts import deploy
from scripts.bridge_image import REPOSITORY
from scripts.commands import Command, Completed
from scripts.publish_frontend import STACK_OUTPUTS
from scripts.stack_events import describe_stack
from tests.unit.fake_npm import npm_main
from tests.unit.test_publish_frontend import web_bucket_and_distribution

ACCOUNT = "123456789012"
REGION = "us-east-1"
PYTHON312 = "/opt/python3.12/bin/python3.12"
SAM_OUTPUTS = (*STACK_OUTPUTS, "TelegramWebhookUrl")
"""The real template's outputs the deploy reads (publish_frontend's and the webhook's)."""
HTTP_API_URL = "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"


@dataclass
class Refusal:
    """A `sam deploy` that CloudFormation refuses: the resource that failed and why."""

    resource: str
    resource_type: str
    reason: str


@dataclass
class Rehearsal:
    """The programs `make deploy` runs, played against moto; every call recorded."""

    installed: set[str] = field(default_factory=lambda: {"docker", "npm", str(deploy.SAM), PYTHON312})
    refuse: Refusal | None = None
    failing: set[str] = field(default_factory=set)
    """Programs (by name) that fail whatever they are asked, as on a broken installation."""
    calls: list[list[str]] = field(default_factory=list)
    stdins: list[str] = field(default_factory=list)
    envs: list[Mapping[str, str]] = field(default_factory=list)
    built: dict[str, str] = field(default_factory=dict)
    """image reference → the manifest a build produced (podman and finch push it later)."""
    resources: dict[str, str] = field(default_factory=dict)

    # Runner ---------------------------------------------------------------------------------------------

    def which(self, program: str) -> str | None:
        """Installed programs by name or path."""
        if program in self.installed:
            return program if "/" in program else f"/usr/bin/{program}"
        return None

    def run(self, command: Command) -> Completed:
        """Record the call and play the program's part."""
        argv = list(command.argv)
        self.calls.append(argv)
        self.envs.append(dict(command.env))
        if command.stdin is not None:
            self.stdins.append(command.stdin)
        if Path(argv[0]).name == "sam":
            return self._sam(argv, command.env)
        if argv[0] == self.which("npm"):
            return Completed(npm_main(argv[1:]), "")
        if self.which(argv[0]) is None:
            return Completed(127, f"{argv[0]}: not found")
        if Path(argv[0]).name in self.failing:
            return Completed(1, f"Error: {Path(argv[0]).name} failed")
        if Path(argv[0]).name == "oras":
            return self._oras(argv, command.stdin)
        if Path(argv[0]).name == "soci":
            return self._soci(argv)
        return self._builder(argv, command.stdin)

    # What the programs do -------------------------------------------------------------------------------

    def _builder(self, argv: list[str], stdin: str | None) -> Completed:
        verb = argv[1]
        if verb in ("--version", "version") or argv[1:3] == ["buildx", "version"]:
            return Completed(0, f"{argv[0]} version 1.0")
        if verb == "login":
            expected = ecr_password()
            return Completed(0, "Login Succeeded") if stdin == expected + "\n" else Completed(1, "denied")
        if verb == "push":
            self._push(argv[2], self.built.pop(argv[2]))
            return Completed(0, "pushed")
        image = argv[argv.index("--tag") + 1]
        refused = refused_by_dockerfile(argv)
        if refused:
            return Completed(1, refused)
        manifest = manifest_of(argv)
        if "--push" in argv:
            self._push(image, manifest)
        else:
            self.built[image] = manifest
        return Completed(0, "built")

    def _oras(self, argv: list[str], stdin: str | None) -> Completed:
        """ORAS: login (password on stdin), an image from ECR into a layout, a layout's image to ECR."""
        if argv[1] == "login":
            return (
                Completed(0, "Login Succeeded") if stdin == ecr_password() + "\n" else Completed(1, "denied")
            )
        if argv[1:3] == ["cp", "--to-oci-layout"]:
            repository_uri, _, tag = argv[3].rpartition(":")
            ecr = boto3.client("ecr", region_name=REGION)
            found = ecr.batch_get_image(
                repositoryName=repository_uri.split("/", 1)[1], imageIds=[{"imageTag": tag}]
            )["images"]
            if not found:
                return Completed(1, f"Error: {argv[3]}: not found")
            write_layout(Path(argv[4].rpartition(":")[0]), found[0]["imageManifest"])
            return Completed(0, f"Copied [registry] {argv[3]} => [oci-layout] {argv[4]}")
        if argv[1:3] == ["cp", "--from-oci-layout"]:
            layout, _, digest = argv[3].partition("@")
            blob = Path(layout) / "blobs" / "sha256" / digest.removeprefix("sha256:")
            self._push(argv[4], blob.read_text())
            return Completed(0, f"Copied [oci-layout] {argv[3]} => [registry] {argv[4]}")
        return Completed(2, f"oras: unexpected {argv[1:3]}")

    def _soci(self, argv: list[str]) -> Completed:
        """`soci convert --standalone`: a layout's image and its SOCI index packed into one image index."""
        if argv[1:3] != ["convert", "--standalone"]:
            return Completed(2, f"soci: unexpected {argv[1:3]}")
        source, target = Path(argv[-2]), Path(argv[-1])
        image = json.loads((source / "index.json").read_text())["manifests"][0]
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {**image, "platform": {"architecture": "arm64", "os": "linux"}},
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "artifactType": "application/vnd.amazon.soci.index.v2+json",
                    "digest": "sha256:" + hashlib.sha256(image["digest"].encode()).hexdigest(),
                    "size": 1,
                },
            ],
        }
        write_layout(target, json.dumps(index))
        return Completed(0, "converted")

    def _push(self, image: str, manifest: str) -> None:
        repository_uri, _, tag = image.rpartition(":")
        boto3.client("ecr", region_name=REGION).put_image(
            repositoryName=repository_uri.split("/", 1)[1], imageManifest=manifest, imageTag=tag
        )

    def _sam(self, argv: list[str], env: Mapping[str, str]) -> Completed:
        if argv[1] == "build":
            python_dir = str(Path(PYTHON312).parent)
            ok = env.get("PATH", "").startswith(python_dir)
            return Completed(0 if ok else 1, "Build Succeeded" if ok else "python3.12 not found")
        stack = argv[argv.index("--stack-name") + 1]
        parameters = parameter_overrides(argv)
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        exists = bool(describe_stack(cloudformation, stack))
        if not self.resources:
            self.resources = create_resources(stack)
        body = json.dumps(stack_template(parameters, self.resources))
        values: Any = [{"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()]
        if exists and self.refuse is None:
            cloudformation.update_stack(StackName=stack, TemplateBody=body, Parameters=values)
        elif not exists:
            cloudformation.create_stack(StackName=stack, TemplateBody=body, Parameters=values)
        if self.refuse is not None:
            # CloudFormation rolls back: an update keeps the stack's parameters, a creation leaves a stack
            # that can only be deleted; the events say why
            status = record_refusal(stack, self.refuse, "UPDATE" if exists else "CREATE")
            return Completed(1, f"Error: Failed to create/update the stack: {status}")
        return Completed(0, f"Successfully created/updated stack - {stack}")

    # What the tests ask -----------------------------------------------------------------------------------

    def programs(self) -> list[str]:
        """Each call as `program verb` (`sam deploy`, `docker buildx build`, `docker login`)."""
        return [
            " ".join([Path(argv[0]).name, *argv[1 : 3 if argv[1] in ("buildx", "cp") else 2]])
            for argv in self.calls
        ]

    def call(self, prefix: str) -> list[str]:
        """The one recorded call whose `program verb` is `prefix`."""
        found = [argv for argv, name in zip(self.calls, self.programs(), strict=True) if name == prefix]
        if len(found) != 1:
            raise AssertionError(f"{len(found)} calls of {prefix}: {self.programs()}")
        return found[0]


def write_layout(layout: Path, manifest: str) -> None:
    """An OCI layout folder holding one manifest (its blob and its entry in index.json)."""
    digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (blobs / digest.removeprefix("sha256:")).write_text(manifest)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    entry = {"mediaType": json.loads(manifest).get("mediaType", ""), "digest": digest, "size": len(manifest)}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))


def refused_by_dockerfile(argv: Sequence[str]) -> str:
    """bridge/Dockerfile's own check: the context's lock must lock the OPENCLAW_VERSION build argument."""
    context = Path(argv[-1])
    version = next(arg.split("=", 1)[1] for arg in argv if arg.startswith("OPENCLAW_VERSION="))
    lock = json.loads((context / "bridge" / "openclaw" / "package-lock.json").read_text())
    locked = lock["packages"]["node_modules/openclaw"]["version"]
    if locked != version:
        return f"bridge/openclaw/package-lock.json does not lock OpenClaw {version}: regenerate it first"
    return ""


PINNED_FILES = [
    "Makefile",
    "bridge/Dockerfile",
    "bridge/openclaw/package-lock.json",
    "bridge/openclaw/package.json",
    "template.yaml",
]
"""What an OpenClaw upgrade rewrites (tests/template/test_openclaw_lock.py checks they agree)."""


def copy_checkout(destination: Path) -> Path:
    """What a deploy reads and an upgrade rewrites: template, Makefile, bridge, functions, layers."""
    ignore = shutil.ignore_patterns("__pycache__", "node_modules", "*.pyc")
    for name in ("template.yaml", "Makefile", ".dockerignore"):
        destination.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPOSITORY / name, destination / name)
    for name in ("bridge", "functions", "layers"):
        shutil.copytree(REPOSITORY / name, destination / name, ignore=ignore)
    return destination


def ecr_password() -> str:
    """The registry password moto's ECR hands out."""
    ecr = boto3.client(
        "ecr", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    token = ecr.get_authorization_token()["authorizationData"][0]
    return base64.b64decode(token["authorizationToken"]).decode().partition(":")[2]


def manifest_of(argv: Sequence[str]) -> str:
    """A stand-in image manifest that differs with the build's arguments (so does its digest)."""
    layer = "sha256:" + hashlib.sha256(json.dumps(list(argv)).encode()).hexdigest()
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 1,
                "digest": layer,
            },
            "layers": [
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1, "digest": layer}
            ],
        }
    )


def parameter_overrides(argv: Sequence[str]) -> dict[str, str]:
    """`--parameter-overrides K="v" …` as sam parses them (double-quoted values)."""
    start = list(argv).index("--parameter-overrides") + 1
    parsed: dict[str, str] = {}
    for item in argv[start:]:
        if item.startswith("--"):
            break
        match = re.fullmatch(r'([A-Za-z0-9]+)="([^"\\]*)"', item)
        if match is None:
            raise AssertionError(f"sam would not parse {item!r}")
        parsed[match.group(1)] = match.group(2)
    return parsed


def create_resources(stack: str) -> dict[str, str]:
    """What the real stack's template creates and the deploy script reads: bucket, CDN, user pool."""
    bucket = f"{stack.lower()}-webbucket"
    distribution = web_bucket_and_distribution(bucket, stack)
    cognito = boto3.client("cognito-idp", region_name=REGION)
    pool = cognito.create_user_pool(PoolName=f"{stack}-users")["UserPool"]["Id"]
    client = cognito.create_user_pool_client(UserPoolId=pool, ClientName="web")["UserPoolClient"]["ClientId"]
    return {
        "WebBucketName": bucket,
        "WebDistributionId": distribution["Id"],
        "WebUrl": f"https://{distribution['DomainName']}",
        "UserPoolId": pool,
        "UserPoolClientId": client,
        "HttpApiUrl": HTTP_API_URL,
        "WebSocketUrl": "wss://f6g7h8i9j0.execute-api.us-east-1.amazonaws.com/prod",
        "TelegramWebhookUrl": f"{HTTP_API_URL}/telegram",
    }


def stack_template(parameters: Mapping[str, str], resources: Mapping[str, str]) -> dict[str, Any]:
    """The deployed stack as far as the script reads it: its parameters and the real template's outputs."""
    return {
        "Parameters": {key: {"Type": "String"} for key in parameters},
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": resources[key]} for key in SAM_OUTPUTS},
    }


def record_refusal(stack: str, refusal: Refusal, operation: str) -> str:
    """The events CloudFormation records when an operation fails on one resource and is rolled back."""
    backend = cloudformation_backends[ACCOUNT][REGION]
    found = next(s for s in backend.stacks.values() if s.name == stack)
    rollback = "UPDATE_ROLLBACK" if operation == "UPDATE" else "ROLLBACK"
    found.status = f"{rollback}_COMPLETE"

    def event(logical: str, kind: str, status: str, reason: str) -> Event:
        return Event(
            stack_id=found.stack_id,
            stack_name=stack,
            logical_resource_id=logical,
            physical_resource_id=logical,
            resource_type=kind,
            resource_status=status,
            resource_status_reason=reason,
            resource_properties=None,
        )

    found.events += [
        event(stack, "AWS::CloudFormation::Stack", f"{operation}_IN_PROGRESS", "User Initiated"),
        event(refusal.resource, refusal.resource_type, f"{operation}_FAILED", refusal.reason),
        event("AgentLogGroup", "AWS::Logs::LogGroup", f"{operation}_FAILED", "Resource update cancelled"),
        event(
            stack, "AWS::CloudFormation::Stack", f"{rollback}_IN_PROGRESS", "The following resource(s) failed"
        ),
        event(stack, "AWS::CloudFormation::Stack", found.status, ""),
    ]
    return str(found.status)
