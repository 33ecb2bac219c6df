"""Publish the web chat to a deployed stack: build it, upload it to the web bucket, invalidate CloudFront.

    python scripts/publish_frontend.py --stack my-openclaw               # build, upload, invalidate
    python scripts/publish_frontend.py --stack my-openclaw --dry-run     # show what would change
    python scripts/publish_frontend.py --stack my-openclaw --no-invalidate

Everything comes from the stack's outputs (WebBucketName, WebDistributionId, WebUrl, and for `config.json`
UserPoolId, UserPoolClientId, HttpApiUrl, WebSocketUrl). The order of the uploads is what keeps a visitor
safe mid-publish: first every asset (under `assets/<hash>/`, cached for a year), then `config.json`, then
`index.html` (both no-cache), so no page is ever served whose assets are not there yet. Older asset
folders are then deleted, except the one the replaced `index.html` used: a tab opened before this publish
still loads its modules from there. Last, `/`, `/index.html` and `/config.json` are invalidated.
Exit codes: 0 done, 1 AWS failed, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

# Runnable as `python scripts/publish_frontend.py` from anywhere: the build lives beside this file.
_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

import boto3  # noqa: E402

from scripts.aws_errors import UsageError, aws_errors, exit_code  # noqa: E402
from scripts.buckets import delete_objects  # noqa: E402
from scripts.build_frontend import FRONTEND, NO_CACHE, Build, BuildError, BuiltFile, build  # noqa: E402

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_cloudfront import CloudFrontClient
    from mypy_boto3_s3 import S3Client

STACK_OUTPUTS = (
    "WebBucketName",
    "WebDistributionId",
    "WebUrl",
    "UserPoolId",
    "UserPoolClientId",
    "HttpApiUrl",
    "WebSocketUrl",
)
"""The outputs this script reads (tests/template checks that template.yaml declares them)."""

PAGE = "index.html"
CONFIG = "config.json"
ASSETS = "assets/"
INVALIDATED_PATHS = ("/", "/index.html", "/config.json")
"""What CloudFront may still hold from the last publish; hashed assets never need invalidating."""

# --------------------------------------------------------------------------------------------------------
# The stack
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackOutputs:
    """Where the web chat goes, and what it must be told about the stack."""

    bucket: str
    distribution_id: str
    web_url: str
    user_pool_id: str
    user_pool_client_id: str
    http_api_url: str
    websocket_url: str


def read_outputs(cloudformation: CloudFormationClient, stack: str) -> StackOutputs:
    """The stack's outputs this script needs; UsageError naming every one that is missing."""
    with aws_errors():
        described = cloudformation.describe_stacks(StackName=stack)
    found = {
        str(output["OutputKey"]): str(output["OutputValue"])
        for output in described["Stacks"][0].get("Outputs") or []
        if output.get("OutputKey") and output.get("OutputValue")
    }
    missing = [name for name in STACK_OUTPUTS if name not in found]
    if missing:
        raise UsageError(
            f"stack {stack} has no {', '.join(missing)} output: deploy the current template.yaml first "
            "(make deploy)"
        )
    return StackOutputs(*(found[name] for name in STACK_OUTPUTS))


def runtime_config(outputs: StackOutputs, region: str) -> dict[str, str]:
    """config.json: what the page needs to sign in and reach the APIs (all of it public)."""
    return {
        "region": region,
        "userPoolId": outputs.user_pool_id,
        "userPoolClientId": outputs.user_pool_client_id,
        "cognitoEndpoint": f"https://cognito-idp.{region}.amazonaws.com/",
        "webSocketUrl": outputs.websocket_url,
        "httpApiUrl": outputs.http_api_url,
    }


# --------------------------------------------------------------------------------------------------------
# Uploading
# --------------------------------------------------------------------------------------------------------


@dataclass
class AssetFolder:
    """One build's assets in the bucket: their keys, and when the newest of them was written."""

    written: datetime
    keys: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Publisher:
    """Writes one build into the web bucket, in an order that never serves a page without its assets."""

    s3: S3Client
    bucket: str
    out: TextIO
    dry_run: bool = False

    def put(self, key: str, body: bytes, content_type: str, cache_control: str) -> None:
        """Upload one object with the headers CloudFront and browsers will cache it by."""
        print(
            f"  {'would put' if self.dry_run else 'put'} {key} [{content_type}] [{cache_control}]",
            file=self.out,
        )
        if self.dry_run:
            return
        with aws_errors(hint="the page still loads the previous build; run again"):
            self.s3.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, CacheControl=cache_control
            )

    def live_asset_prefix(self) -> str | None:
        """The asset folder the page now being served loads from; None before the first publish."""
        with aws_errors():
            try:
                page = self.s3.get_object(Bucket=self.bucket, Key=PAGE)["Body"].read()
            except self.s3.exceptions.NoSuchKey:
                return None
        found = re.search(r'"(assets/[^"/]+)/', page.decode("utf-8", errors="replace"))
        return found.group(1) if found else None

    def asset_folders(self) -> dict[str, AssetFolder]:
        """Every build's folder under assets/ in the bucket (a stray file there counts as its own)."""
        folders: dict[str, AssetFolder] = {}
        with aws_errors():
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=ASSETS):
                for item in page.get("Contents") or []:
                    key, written = str(item["Key"]), item["LastModified"]
                    name = "/".join(key.split("/")[:2])
                    folder = folders.setdefault(name, AssetFolder(written))
                    folder.keys.append(key)
                    folder.written = max(folder.written, written)
        return folders

    def publish(self, site: Build, config: dict[str, str]) -> list[str]:
        """Upload the assets, then config.json, then the page; delete older builds; the folders deleted."""
        previous = self.live_asset_prefix()
        pages = [file for file in site.files if file.path == PAGE]
        assets = [file for file in site.files if file.path != PAGE]
        if len(pages) != 1:
            raise UsageError(f"the build has {len(pages)} {PAGE} files, expected one")
        verb = "would upload" if self.dry_run else "uploading"
        print(f"{verb} {len(assets)} assets to s3://{self.bucket}/{site.asset_prefix}/", file=self.out)
        for file in assets:
            self.upload(file)
        body = (json.dumps(config, indent=2) + "\n").encode()
        self.put(CONFIG, body, "application/json", NO_CACHE)
        self.upload(pages[0])
        return self.prune(keep_current=site.asset_prefix, previous=previous)

    def upload(self, file: BuiltFile) -> None:
        """Upload one file of the build under its URL path."""
        self.put(file.path, file.source.read_bytes(), file.content_type, file.cache_control)

    def prune(self, keep_current: str, previous: str | None) -> list[str]:
        """Delete the asset folders of older builds, keeping this one and the one it replaced."""
        others = {name: folder for name, folder in self.asset_folders().items() if name != keep_current}
        if previous is None or previous not in others:
            # Publishing the same build again (or after a page from elsewhere): the newest other one is the
            # build that tabs opened before the last real change may still load from.
            previous = max(others, key=lambda name: others[name].written, default=None)
        stale = sorted(name for name in others if name != previous)
        if previous is not None:
            print(f"keeping the previous build's {previous}/ for tabs that are still open", file=self.out)
        if stale:
            self._delete_builds(stale, others)
        return stale

    def _delete_builds(self, names: list[str], folders: dict[str, AssetFolder]) -> None:
        """Delete these builds' folders (in a dry run, only say so)."""
        print(
            f"{'would delete' if self.dry_run else 'deleting'} older builds: {', '.join(names)}",
            file=self.out,
        )
        if not self.dry_run:
            self.delete([key for name in names for key in folders[name].keys])

    def delete(self, keys: Sequence[str]) -> None:
        """Delete objects, a thousand per request."""
        delete_objects(
            self.s3,
            self.bucket,
            [{"Key": key} for key in keys],
            hint="the new build is live; run again to finish the clean-up",
        )


def invalidate(cloudfront: CloudFrontClient, distribution_id: str) -> str:
    """Ask CloudFront to drop its copies of the page and config.json; the invalidation's id."""
    with aws_errors(hint="the files are published; run again, or invalidate /index.html and /config.json"):
        created = cloudfront.create_invalidation(
            DistributionId=distribution_id,
            InvalidationBatch={
                "Paths": {"Quantity": len(INVALIDATED_PATHS), "Items": list(INVALIDATED_PATHS)},
                "CallerReference": f"publish-frontend-{uuid.uuid4().hex}",
            },
        )
    return str(created["Invalidation"]["Id"])


# --------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="publish_frontend.py",
        description="Build the web chat and publish it to a deployed stack's bucket and CloudFront.",
    )
    parser.add_argument("--stack", metavar="NAME", required=True, help="deployed stack (CloudFormation name)")
    parser.add_argument("--region", help="AWS region (default: boto3's)")
    parser.add_argument(
        "--dry-run", action="store_true", help="build and show what would change; change nothing"
    )
    parser.add_argument("--no-invalidate", action="store_true", help="skip the CloudFront invalidation")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, out: TextIO) -> None:
    """Read the stack, build, upload, invalidate; print progress as it goes."""
    session = boto3.session.Session(region_name=args.region)
    region = session.region_name
    if not region:
        raise UsageError("no AWS region: pass --region or set AWS_REGION")
    with aws_errors():
        cloudformation = session.client("cloudformation")
        s3 = session.client("s3")
        cloudfront = session.client("cloudfront")
    print(f"reading the outputs of stack {args.stack} ({region})", file=out)
    outputs = read_outputs(cloudformation, args.stack)
    with tempfile.TemporaryDirectory(prefix="openclaw-web-") as workdir:
        print(f"building the web chat from {FRONTEND}", file=out)
        try:
            site = build(Path(workdir) / "site", source=FRONTEND)
        except BuildError as exc:
            raise UsageError(str(exc)) from None
        publisher = Publisher(s3=s3, bucket=outputs.bucket, out=out, dry_run=args.dry_run)
        publisher.publish(site, runtime_config(outputs, region))
    if args.dry_run:
        print(f"dry run: nothing was changed; {outputs.web_url}", file=out)
        return
    if args.no_invalidate:
        print("not invalidating: edges that still hold the old page serve it until they revalidate", file=out)
    else:
        invalidation = invalidate(cloudfront, outputs.distribution_id)
        print(
            f"invalidation {invalidation} created for {', '.join(INVALIDATED_PATHS)} "
            f"(distribution {outputs.distribution_id})",
            file=out,
        )
    print(f"published: {outputs.web_url}", file=out)


def main(argv: list[str] | None = None) -> int:
    """Run the script; the process exit code."""
    args = parse_args(argv)
    return exit_code(lambda: run(args, sys.stdout))


if __name__ == "__main__":
    raise SystemExit(main())
