"""scripts/publish_frontend.py: the web chat reaches the stack's bucket in a safe order, and CloudFront hears.

S3, CloudFront and CloudFormation are moto in-process (the `aws` fixture); the stack is a tiny template whose
outputs name a moto bucket and distribution. The build comes from a small fake frontend folder, so these
tests do not depend on the real web chat.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from scripts import publish_frontend as script
from scripts.build_frontend import IMMUTABLE

STACK = "web-test"
BUCKET = "web-test-webbucket"
REGION = "us-east-1"
HTTP_API_URL = "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
WEBSOCKET_URL = "wss://f6g7h8i9j0.execute-api.us-east-1.amazonaws.com/prod"


@dataclass(frozen=True)
class Deployed:
    """The moto side of a deployed stack: its web bucket, distribution and outputs."""

    distribution_id: str
    web_url: str

    def invalidations(self) -> list[Any]:
        cloudfront = boto3.client("cloudfront")
        listed = cloudfront.list_invalidations(DistributionId=self.distribution_id)["InvalidationList"]
        return [
            cloudfront.get_invalidation(DistributionId=self.distribution_id, Id=item["Id"])["Invalidation"]
            for item in listed.get("Items") or []
        ]


def create_stack(outputs: dict[str, str], name: str = STACK) -> None:
    """A stack as far as the script cares: one resource and the given outputs."""
    body = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(body))


def stack_outputs(distribution_id: str, web_url: str) -> dict[str, str]:
    return {
        "WebBucketName": BUCKET,
        "WebDistributionId": distribution_id,
        "WebUrl": web_url,
        "UserPoolId": "us-east-1_AbCdEf123",
        "UserPoolClientId": "3n4b5c6d7e8f9g0h",
        "HttpApiUrl": HTTP_API_URL,
        "WebSocketUrl": WEBSOCKET_URL,
    }


def web_bucket_and_distribution(bucket: str, reference: str) -> dict[str, Any]:
    """The stack's web bucket in moto and a CloudFront distribution in front of it (its Id, DomainName)."""
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=bucket)
    distribution = boto3.client("cloudfront", region_name=REGION).create_distribution(
        DistributionConfig={
            "CallerReference": reference,
            "Comment": "",
            "Enabled": True,
            "Origins": {
                "Quantity": 1,
                "Items": [
                    {
                        "Id": "WebBucket",
                        "DomainName": f"{bucket}.s3.{REGION}.amazonaws.com",
                        "S3OriginConfig": {"OriginAccessIdentity": ""},
                    }
                ],
            },
            "DefaultCacheBehavior": {
                "TargetOriginId": "WebBucket",
                "ViewerProtocolPolicy": "redirect-to-https",
                "CachePolicyId": "658327ea-f89d-4fab-a63d-7e88639e58f6",
            },
        }
    )["Distribution"]
    return dict(distribution)


@pytest.fixture
def deployed(aws: dict[str, str]) -> Deployed:
    """moto holding the web bucket, a distribution in front of it, and the stack's outputs."""
    distribution = web_bucket_and_distribution(BUCKET, "web-test")
    stack = Deployed(distribution["Id"], f"https://{distribution['DomainName']}")
    create_stack(stack_outputs(stack.distribution_id, stack.web_url))
    return stack


def write_frontend(root: Path, app: str = "export const version = 1;\n") -> Path:
    """A frontend folder as build_frontend expects it, with its two pinned libraries installed."""
    files = {
        "index.html": '<!doctype html><link rel="stylesheet" href="assets/app.css">'
        '<script type="module" src="assets/app.js"></script>\n',
        "assets/app.js": app,
        "assets/app.css": "body { margin: 0; }\n",
        "assets/icons/logo.svg": '<svg xmlns="http://www.w3.org/2000/svg"/>\n',
        "node_modules/marked/lib/marked.esm.js": "export const marked = {};\n",
        "node_modules/dompurify/dist/purify.es.mjs": "export default {};\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def frontend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake frontend the script builds (edit its files to make a new build)."""
    root = write_frontend(tmp_path / "frontend")
    monkeypatch.setattr(script, "FRONTEND", root)
    return root


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """Every AWS call the script's clients make, in order: (operation, S3 key or '')."""
    recorded: list[tuple[str, str]] = []
    real_client = boto3.session.Session.client

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        recorded.append((model.name, str(params.get("Key", ""))))

    def client(self: boto3.session.Session, *args: Any, **kwargs: Any) -> Any:
        made = real_client(self, *args, **kwargs)
        made.meta.events.register("before-parameter-build", record)
        return made

    monkeypatch.setattr(boto3.session.Session, "client", client)
    yield recorded


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """main(argv): exit code, stdout, stderr."""
    code = script.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def objects() -> dict[str, dict[str, Any]]:
    """Every object in the web bucket: key → its headers and body."""
    s3 = boto3.client("s3")
    found: dict[str, dict[str, Any]] = {}
    for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents") or []:
        got = s3.get_object(Bucket=BUCKET, Key=item["Key"])
        found[item["Key"]] = {
            "ContentType": got["ContentType"],
            "CacheControl": got.get("CacheControl"),
            "Body": got["Body"].read(),
        }
    return found


def asset_folders() -> set[str]:
    return {"/".join(key.split("/")[:2]) for key in objects() if key.startswith("assets/")}


def live_folder() -> str:
    page = objects()["index.html"]["Body"].decode()
    (folder,) = {folder for folder in asset_folders() if f'"{folder}/' in page}
    return folder


# ------------------------------------------------------------------------------------------------ publish


def test_publishing_uploads_the_build_with_its_types_and_cache_headers(
    deployed: Deployed, frontend: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the web chat is published to the stack
    code, out, err = run(capsys, "--stack", STACK)

    # Then every asset is under one hashed folder, immutable, with the right type
    assert code == 0, err
    stored = objects()
    folder = live_folder()
    assert {key: (value["ContentType"], value["CacheControl"]) for key, value in stored.items()} == {
        f"{folder}/app.js": ("text/javascript", IMMUTABLE),
        f"{folder}/app.css": ("text/css; charset=utf-8", IMMUTABLE),
        f"{folder}/icons/logo.svg": ("image/svg+xml", IMMUTABLE),
        f"{folder}/vendor/marked.esm.js": ("text/javascript", IMMUTABLE),
        f"{folder}/vendor/purify.es.mjs": ("text/javascript", IMMUTABLE),
        "config.json": ("application/json", "no-cache"),
        "index.html": ("text/html; charset=utf-8", "no-cache"),
    }
    # And the page loads its assets from that folder; the person is told where the chat is
    assert f'src="{folder}/app.js"' in stored["index.html"]["Body"].decode()
    assert stored[f"{folder}/app.js"]["Body"] == (frontend / "assets/app.js").read_bytes()
    assert out.rstrip().endswith(f"published: {deployed.web_url}")


def test_config_json_tells_the_page_about_the_stack(
    deployed: Deployed, frontend: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the web chat is published
    assert run(capsys, "--stack", STACK)[0] == 0

    # Then config.json holds exactly what the page needs to sign in and reach the APIs
    assert json.loads(objects()["config.json"]["Body"]) == {
        "region": REGION,
        "userPoolId": "us-east-1_AbCdEf123",
        "userPoolClientId": "3n4b5c6d7e8f9g0h",
        "cognitoEndpoint": f"https://cognito-idp.{REGION}.amazonaws.com/",
        "webSocketUrl": WEBSOCKET_URL,
        "httpApiUrl": HTTP_API_URL,
    }


def test_the_page_is_uploaded_last_after_its_assets_and_config(
    deployed: Deployed, frontend: Path, calls: list[tuple[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    # When the web chat is published
    assert run(capsys, "--stack", STACK)[0] == 0

    # Then a visitor can never get a page whose assets or config are not there yet
    puts = [key for operation, key in calls if operation == "PutObject"]
    assert puts[-2:] == ["config.json", "index.html"]
    assert len(puts) == 7 and all(key.startswith("assets/") for key in puts[:-2])
    # And CloudFront is told only after the page is in place
    operations = [operation for operation, _ in calls]
    assert operations.index("CreateInvalidation") > max(
        i for i, op in enumerate(operations) if op == "PutObject"
    )


def test_the_page_config_and_root_are_invalidated(
    deployed: Deployed, frontend: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the web chat is published twice
    assert run(capsys, "--stack", STACK)[0] == 0
    code, out, _ = run(capsys, "--stack", STACK)

    # Then each publish created its own invalidation of the paths that are not hashed, and printed its id
    assert code == 0
    invalidations = deployed.invalidations()
    assert len(invalidations) == 2
    assert [i["InvalidationBatch"]["Paths"]["Items"] for i in invalidations] == [
        ["/", "/index.html", "/config.json"]
    ] * 2
    references = {i["InvalidationBatch"]["CallerReference"] for i in invalidations}
    assert len(references) == 2
    assert any(f"invalidation {i['Id']} created" in out for i in invalidations)


def test_no_invalidate_skips_cloudfront(
    deployed: Deployed, frontend: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--stack", STACK, "--no-invalidate")
    assert code == 0
    assert deployed.invalidations() == []
    assert "index.html" in objects()


def test_older_builds_are_deleted_but_the_one_open_tabs_may_use_is_kept(
    deployed: Deployed, frontend: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a file left under assets/ by some earlier deployment, then three builds published in turn
    boto3.client("s3").put_object(Bucket=BUCKET, Key="assets/legacy.js", Body=b"old")
    served: list[str] = []
    for version in (1, 2, 3):
        write_frontend(frontend, app=f"export const version = {version};\n")
        assert run(capsys, "--stack", STACK)[0] == 0
        served.append(live_folder())
    first, second, third = served
    assert len(set(served)) == 3

    # Then the bucket holds the live build and the one it replaced (a tab opened earlier loads from it)
    assert asset_folders() == {second, third}
    assert "assets/legacy.js" not in objects()
    assert live_folder() == third

    # When the same build is published again, the previous one is still kept
    code, out, _ = run(capsys, "--stack", STACK)
    assert code == 0
    assert asset_folders() == {second, third}
    assert f"keeping the previous build's {second}/" in out
    assert first not in out  # it was deleted by the third publish, not now


def test_each_publish_says_which_builds_it_keeps_and_deletes(
    deployed: Deployed, frontend: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given / When the first build is published, then a second and a third
    outs: list[str] = []
    served: list[str] = []
    for version in (1, 2, 3):
        write_frontend(frontend, app=f"export const version = {version};\n")
        code, out, _ = run(capsys, "--stack", STACK)
        assert code == 0
        outs.append(out)
        served.append(live_folder())
    first, second, _ = served

    # Then the first has nothing to keep or delete, the second keeps the first, the third deletes it
    assert "keeping" not in outs[0] and "deleting" not in outs[0]
    assert f"keeping the previous build's {first}/ for tabs that are still open" in outs[1]
    assert "deleting" not in outs[1]
    assert f"keeping the previous build's {second}/ for tabs that are still open" in outs[2]
    assert f"deleting older builds: {first}\n" in outs[2]


def test_a_dry_run_names_the_builds_it_would_delete(
    deployed: Deployed, frontend: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given two builds published in turn
    for version in (1, 2):
        write_frontend(frontend, app=f"export const version = {version};\n")
        assert run(capsys, "--stack", STACK)[0] == 0
    before = objects()
    first = sorted(asset_folders() - {live_folder()})[0]

    # When a third is published with --dry-run
    write_frontend(frontend, app="export const version = 3;\n")
    code, out, _ = run(capsys, "--stack", STACK, "--dry-run")

    # Then it names the build it would delete, and deletes nothing
    assert code == 0
    assert f"would delete older builds: {first}\n" in out
    assert objects() == before


def test_dry_run_changes_nothing(
    deployed: Deployed, frontend: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a published build
    assert run(capsys, "--stack", STACK)[0] == 0
    before = objects()

    # When a new build is published with --dry-run
    write_frontend(frontend, app="export const version = 2;\n")
    code, out, _ = run(capsys, "--stack", STACK, "--dry-run")

    # Then it says what it would upload, but the bucket and CloudFront are untouched
    assert code == 0
    assert "would put index.html" in out and "would put config.json" in out
    assert objects() == before
    assert len(deployed.invalidations()) == 1


# ------------------------------------------------------------------------------------------------ failures


def test_a_stack_without_the_web_outputs_is_a_configuration_error(
    aws: dict[str, str], frontend: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a stack deployed from a template without the web chat's resources
    outputs = stack_outputs("E123", "https://d1.cloudfront.net")
    for name in ("WebBucketName", "WebDistributionId", "WebUrl"):
        del outputs[name]
    create_stack(outputs, name="old-stack")

    # When the script runs for it
    code, _, err = run(capsys, "--stack", "old-stack")

    # Then it names every missing output and says what to do
    assert code == 2
    assert "WebBucketName, WebDistributionId, WebUrl" in err and "deploy" in err
    assert "Traceback" not in err


def test_a_missing_stack_is_a_configuration_error(
    aws: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "--stack", "no-such-stack")
    assert code == 2 and "does not exist" in err


def test_without_the_pinned_libraries_the_script_says_to_run_make_frontend(
    deployed: Deployed, frontend: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a checkout where `npm ci` never ran in frontend/
    (frontend / "node_modules/dompurify/dist/purify.es.mjs").unlink()

    # When the script runs
    code, _, err = run(capsys, "--stack", STACK)

    # Then it stops before uploading anything, and says how to fix it
    assert code == 2
    assert "make frontend" in err
    assert objects() == {} and deployed.invalidations() == []


def test_an_aws_failure_exits_1_with_its_code_and_no_traceback(
    aws: dict[str, str], frontend: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a stack whose web bucket is gone
    create_stack(stack_outputs("E123", "https://d1.cloudfront.net"))

    # When the script runs
    code, _, err = run(capsys, "--stack", STACK)

    # Then S3's refusal is one line with its code
    assert code == 1
    assert "NoSuchBucket" in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_a_failed_invalidation_exits_1_and_says_the_files_are_published(
    deployed: Deployed, frontend: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given outputs naming a distribution that does not exist
    boto3.client("cloudformation").delete_stack(StackName=STACK)
    create_stack(stack_outputs("E0000000000000", deployed.web_url), name="stale-stack")

    # When the script runs
    code, _, err = run(capsys, "--stack", "stale-stack")

    # Then the files are in place, and the error says so and what is left to do
    assert code == 1
    assert "NoSuchDistribution" in err and "files are published" in err
    assert "index.html" in objects()
