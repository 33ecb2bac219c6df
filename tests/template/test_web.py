"""The web chat's hosting in template.yaml: a private bucket behind CloudFront, strict headers, SPA paths."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from local.runtime import runtime
from local.template import load_template, resources_of_type
from scripts.publish_frontend import STACK_OUTPUTS

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self' https://cognito-idp.${AWS::Region}.amazonaws.com "
    "https://*.execute-api.${AWS::Region}.amazonaws.com wss://*.execute-api.${AWS::Region}.amazonaws.com; "
    "manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'; "
    "upgrade-insecure-requests"
)


def _properties(logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = RESOURCES[logical_id]["Properties"]
    return properties


def _distribution() -> dict[str, Any]:
    config: dict[str, Any] = _properties("WebDistribution")["DistributionConfig"]
    return config


def _headers() -> dict[str, Any]:
    config: dict[str, Any] = _properties("WebSecurityHeaders")["ResponseHeadersPolicyConfig"]
    return config


def _web_bucket_statements() -> list[dict[str, Any]]:
    policies = [
        policy["Properties"]["PolicyDocument"]
        for policy in resources_of_type(TEMPLATE, "AWS::S3::BucketPolicy").values()
        if policy["Properties"]["Bucket"] == {"Ref": "WebBucket"}
    ]
    assert len(policies) == 1, "the web bucket must have exactly one bucket policy"
    statements: list[dict[str, Any]] = policies[0]["Statement"]
    return statements


def _csp_directives(region: str = "eu-west-1") -> dict[str, list[str]]:
    """The Content-Security-Policy as the browser gets it in a region: directive → sources."""
    text = _headers()["SecurityHeadersConfig"]["ContentSecurityPolicy"]["ContentSecurityPolicy"]["Fn::Sub"]
    resolved = text.replace("${AWS::Region}", region)
    assert "${" not in resolved, "the CSP may only substitute the region"
    directives: dict[str, list[str]] = {}
    for directive in resolved.split(";"):
        name, *sources = directive.split()
        directives[name] = sources
    return directives


def _csp_allows(sources: list[str], url: str) -> bool:
    """Whether a CSP host-source list (scheme://host or scheme://*.host) admits the origin of `url`."""
    match = re.match(r"([a-z]+)://([^/:]+)", url)
    assert match, url
    scheme, host = match.groups()
    for source in sources:
        wanted = re.fullmatch(r"([a-z]+)://(\*\.)?([^/]+?)/?", source)
        if wanted is None or wanted.group(1) != scheme:
            continue
        if host == wanted.group(3) or (wanted.group(2) and host.endswith("." + wanted.group(3))):
            return True
    return False


def _node() -> str:
    """Node: the pinned runtime (`make openclaw`) when installed, else the one on PATH."""
    pinned = runtime()
    if pinned.node.is_file():
        return str(pinned.node)
    found = shutil.which("node")
    assert found, "no Node to run the CloudFront function: run `make openclaw` (or install Node >= 20)"
    return found


def _rewrite(uris: list[str], tmp_path: Path) -> list[str]:
    """The URI CloudFront would fetch from the bucket for each viewer URI, running the template's code."""
    code = _properties("WebSpaRewrite")["FunctionCode"]
    harness = tmp_path / "rewrite.js"
    harness.write_text(
        code
        + "\nconst uris = JSON.parse(process.argv[2]);\n"
        + "console.log(JSON.stringify(uris.map((uri) => handler({version: '1.0', context: {eventType: "
        + "'viewer-request'}, viewer: {ip: '192.0.2.1'}, request: {method: 'GET', uri: uri, "
        + "querystring: {}, headers: {}, cookies: {}}}).uri)));\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [_node(), str(harness), json.dumps(uris)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rewritten: list[str] = json.loads(result.stdout)
    return rewritten


# --------------------------------------------------------------------------------------------------------
# Bucket
# --------------------------------------------------------------------------------------------------------


def test_web_bucket_serves_no_website_and_grants_nothing_by_acl() -> None:
    # Given the web bucket (its blocks and encryption: test_every_bucket_blocks_public_access_and_encrypts)
    properties = _properties("WebBucket")

    # Then S3 has no public website endpoint for it and no canned ACL: CloudFront is the only way in
    assert "WebsiteConfiguration" not in properties and "AccessControl" not in properties


def test_web_bucket_is_readable_only_by_this_distribution() -> None:
    # Given the statements of the web bucket's policy
    allows = [s for s in _web_bucket_statements() if s["Effect"] == "Allow"]

    # Then the one grant is GetObject to CloudFront, on behalf of this stack's distribution only
    assert len(allows) == 1
    (allow,) = allows
    assert allow["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert allow["Action"] == "s3:GetObject"
    assert allow["Resource"] == {"Fn::Sub": "${WebBucket.Arn}/*"}
    distribution_arn = "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${WebDistribution}"
    assert allow["Condition"] == {"StringEquals": {"AWS:SourceArn": {"Fn::Sub": distribution_arn}}}


def test_web_bucket_denies_requests_without_tls() -> None:
    # Given the deny statements of the web bucket's policy
    denies = [s for s in _web_bucket_statements() if s["Effect"] == "Deny"]

    # Then every S3 action on the bucket and its objects is refused to everyone over plain HTTP
    assert denies == [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [{"Fn::GetAtt": ["WebBucket", "Arn"]}, {"Fn::Sub": "${WebBucket.Arn}/*"}],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ]


def test_the_data_bucket_is_not_served_by_cloudfront() -> None:
    # Given every origin of the distribution
    origins = _distribution()["Origins"]

    # Then the only one is the web bucket: the users' backups never sit behind a public URL
    assert [origin["DomainName"] for origin in origins] == [
        {"Fn::GetAtt": ["WebBucket", "RegionalDomainName"]}
    ]


# --------------------------------------------------------------------------------------------------------
# Distribution
# --------------------------------------------------------------------------------------------------------


def test_distribution_reads_the_bucket_with_origin_access_control() -> None:
    # Given the distribution's origin and the origin access control
    (origin,) = _distribution()["Origins"]
    control = _properties("WebOriginAccessControl")["OriginAccessControlConfig"]

    # Then CloudFront signs every request to S3 (SigV4), and no legacy origin access identity is used
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": ["WebOriginAccessControl", "Id"]}
    assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}
    assert (
        control["OriginAccessControlOriginType"],
        control["SigningBehavior"],
        control["SigningProtocol"],
    ) == ("s3", "always", "sigv4")


def test_every_cache_behavior_is_https_read_only_with_the_headers_and_the_rewrite() -> None:
    # Given the default cache behavior and any others
    config = _distribution()
    behaviors = [config["DefaultCacheBehavior"], *config.get("CacheBehaviors", [])]

    # Then each one refuses plain HTTP, only reads, adds the security headers and rewrites app paths
    for behavior in behaviors:
        assert behavior["ViewerProtocolPolicy"] in {"redirect-to-https", "https-only"}
        assert behavior["AllowedMethods"] == ["GET", "HEAD"]
        assert behavior["ResponseHeadersPolicyId"] == {"Ref": "WebSecurityHeaders"}
        assert behavior["FunctionAssociations"] == [
            {"EventType": "viewer-request", "FunctionARN": {"Fn::GetAtt": ["WebSpaRewrite", "FunctionARN"]}}
        ]
    # The objects' own Cache-Control headers decide how long each is kept (publish_frontend.py sets them)
    assert config["DefaultCacheBehavior"]["CachePolicyId"] == CACHING_OPTIMIZED
    assert config["DefaultRootObject"] == "index.html"
    assert (config["HttpVersion"], config["IPV6Enabled"], config["Enabled"]) == ("http2and3", True, True)


def test_the_rewrite_is_published_on_the_cloudfront_js_2_runtime() -> None:
    # Given the CloudFront function
    properties = _properties("WebSpaRewrite")

    # Then it is published with the stack (the distribution can only use a published function)
    assert properties["AutoPublish"] is True
    assert properties["FunctionConfig"]["Runtime"] == "cloudfront-js-2.0"


# --------------------------------------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------------------------------------


def test_content_security_policy_is_the_strict_one() -> None:
    # Given the CSP as declared
    declared = _headers()["SecurityHeadersConfig"]["ContentSecurityPolicy"]

    # Then it is exactly the agreed policy, and CloudFront replaces any CSP the origin might send
    assert declared == {"ContentSecurityPolicy": {"Fn::Sub": CSP}, "Override": True}


def test_content_security_policy_forbids_inline_code_and_anything_not_named() -> None:
    # Given the CSP a browser gets in some region
    directives = _csp_directives()
    every_source = [source for sources in directives.values() for source in sources]

    # Then nothing is allowed by default, no inline or eval'd script or style, no framing, no plugins
    assert directives["default-src"] == ["'none'"]
    assert not {"'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*", "http:", "https:"} & set(
        every_source
    )
    assert directives["script-src"] == ["'self'"] and directives["style-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"] and directives["object-src"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"] and directives["form-action"] == ["'none'"]
    assert "upgrade-insecure-requests" in directives


def test_content_security_policy_lets_the_page_reach_the_stacks_apis_and_cognito() -> None:
    # Given the stack's API URLs and Cognito's endpoint in a region (API ids as API Gateway makes them)
    region = "eu-west-1"
    connect = _csp_directives(region)["connect-src"]
    urls = [
        f"https://a1b2c3d4e5.execute-api.{region}.amazonaws.com/api/status",
        f"wss://f6g7h8i9j0.execute-api.{region}.amazonaws.com/prod",
        f"https://cognito-idp.{region}.amazonaws.com/",
    ]

    # Then the page may connect to each of them, and to nothing in another region or on another site
    assert all(_csp_allows(connect, url) for url in urls), connect
    assert not _csp_allows(connect, "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/")
    assert not _csp_allows(connect, "https://evil.example.com/")
    assert not _csp_allows(connect, f"ws://a1b2c3d4e5.execute-api.{region}.amazonaws.com/prod")


def test_security_headers_pin_https_and_forbid_framing_sniffing_and_referrers() -> None:
    # Given the rest of the security headers
    headers = _headers()["SecurityHeadersConfig"]
    custom = {item["Header"]: item for item in _headers()["CustomHeadersConfig"]["Items"]}

    # Then HTTPS is pinned for two years (preload-ready), and every header overrides the origin's
    assert headers["StrictTransportSecurity"] == {
        "AccessControlMaxAgeSec": 63072000,
        "IncludeSubdomains": True,
        "Preload": True,
        "Override": True,
    }
    assert headers["ContentTypeOptions"] == {"Override": True}
    assert headers["FrameOptions"] == {"FrameOption": "DENY", "Override": True}
    assert headers["ReferrerPolicy"] == {"ReferrerPolicy": "no-referrer", "Override": True}
    assert custom == {
        "Permissions-Policy": {
            "Header": "Permissions-Policy",
            "Value": "camera=(), microphone=(), geolocation=(), payment=()",
            "Override": True,
        },
        "Cross-Origin-Opener-Policy": {
            "Header": "Cross-Origin-Opener-Policy",
            "Value": "same-origin",
            "Override": True,
        },
    }


# --------------------------------------------------------------------------------------------------------
# SPA rewrite (the function's own code, run by Node)
# --------------------------------------------------------------------------------------------------------


def test_app_paths_are_served_the_page_and_files_are_served_as_themselves(tmp_path: Path) -> None:
    # Given viewer URIs: the app's own routes, and files (present or not)
    app_routes = ["/", "/settings", "/c/123", "/c/01HZX3Y7/", "/conversations/abc-def"]
    files = [
        "/index.html",
        "/config.json",
        "/assets/0123456789abcdef/app.js",
        "/assets/missing.js",
        "/favicon.ico",
        "/.well-known/security.txt",
    ]

    # When the function runs on them
    rewritten = _rewrite(app_routes + files, tmp_path)

    # Then routes become the page, and files keep their URI (a missing script stays an error, not HTML)
    assert rewritten == ["/index.html"] * len(app_routes) + files


# --------------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------------


def test_the_stack_outputs_everything_the_publish_script_reads() -> None:
    # Given the outputs scripts/publish_frontend.py reads to upload the build and write config.json
    outputs = TEMPLATE["Outputs"]

    # Then the template declares each of them
    assert set(STACK_OUTPUTS) <= set(outputs), sorted(set(STACK_OUTPUTS) - set(outputs))
    assert outputs["WebUrl"]["Value"] == {"Fn::Sub": "https://${WebDistribution.DomainName}"}
    assert outputs["WebBucketName"]["Value"] == {"Ref": "WebBucket"}
    assert outputs["WebDistributionId"]["Value"] == {"Ref": "WebDistribution"}


@pytest.mark.parametrize("logical_id", ["WebOriginAccessControl", "WebSecurityHeaders", "WebSpaRewrite"])
def test_account_wide_cloudfront_names_include_stack_and_region(logical_id: str) -> None:
    # Given a CloudFront resource whose name must be unique in the whole account
    properties = _properties(logical_id)
    config = properties.get("OriginAccessControlConfig") or properties.get("ResponseHeadersPolicyConfig")
    name = (config or properties)["Name"]

    # Then two stacks (same name in two regions, or two names) cannot collide
    assert "${AWS::StackName}" in name["Fn::Sub"] and "${AWS::Region}" in name["Fn::Sub"]
