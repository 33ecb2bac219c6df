"""local/web.py: the local stack serves the web chat build as CloudFront does, under the deployed headers.

The build comes from a small fake frontend made with scripts/build_frontend.py; the security headers come
from the repository's template.yaml. Requests go through Starlette's in-process TestClient (no sockets).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message

from local.resolve import Resolver
from local.web import localise_csp, security_headers, web_app
from scripts.build_frontend import Build, build

HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
}
RUNTIME_CONFIG = {"httpApiUrl": "http://127.0.0.1:1", "websocketUrl": "ws://127.0.0.1:2", "region": "local"}
SECRET = "the contents of a file outside the build\n"

SOURCE_FILES = {
    "index.html": '<!doctype html><title>OpenClaw</title><link rel="stylesheet" href="assets/styles.css">'
    '<script type="module" src="assets/app/main.js"></script>\n',
    "assets/app/main.js": 'import { marked } from "../vendor/marked.esm.js";\n',
    "assets/styles.css": "body { margin: 0; }\n",
    "assets/icon.svg": '<svg xmlns="http://www.w3.org/2000/svg"/>\n',
    "node_modules/marked/lib/marked.esm.js": "export const marked = {};\n",
    "node_modules/dompurify/dist/purify.es.mjs": "export default {};\n",
}


@pytest.fixture
def site(tmp_path: Path) -> Build:
    """A build of a small fake frontend in tmp_path/build, with a secret file next to the build folder."""
    source = tmp_path / "frontend"
    for name, text in SOURCE_FILES.items():
        path = source / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (tmp_path / "secret.txt").write_text(SECRET)
    return build(tmp_path / "build", source=source)


def sub_app() -> Starlette:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"sub-app at {request.url.path}")

    return Starlette(routes=[Route("/hello", hello)])


@pytest.fixture
def app(site: Build) -> ASGIApp:
    return web_app(site.root, lambda: dict(RUNTIME_CONFIG), HEADERS, mounts={"/_local/x": sub_app()})


async def raw_get(app: ASGIApp, path: str) -> tuple[int, bytes]:
    """GET `path` exactly as given: HTTP clients remove `..` segments before sending, an attacker does not."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        # 2.4: responses finish without waiting for a disconnect this helper never sends
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


# -------------------------------------------------------------------------------------------- the page


@pytest.mark.parametrize("route", ["/", "/c/123", "/settings", "/c/01HZX/"])
def test_the_app_routes_serve_the_page_revalidated_on_every_load(
    site: Build, app: ASGIApp, route: str
) -> None:
    # Given the web chat served from a build
    with TestClient(app) as client:
        # When a browser opens one of the app's own routes (no file extension in the last segment)
        response = client.get(route)

    # Then it gets the built page, which the browser must revalidate
    assert response.status_code == 200
    assert response.text == (site.root / "index.html").read_text()
    assert f'src="{site.asset_prefix}/app/main.js"' in response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("app/main.js", "text/javascript; charset=utf-8"),
        ("vendor/purify.es.mjs", "text/javascript; charset=utf-8"),
        ("styles.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ],
)
def test_a_hashed_asset_is_served_with_its_type_and_cached_for_a_year(
    site: Build, app: ASGIApp, name: str, content_type: str
) -> None:
    # Given the web chat served from a build
    with TestClient(app) as client:
        # When the browser loads an asset the page references
        response = client.get(f"/{site.asset_prefix}/{name}")

    # Then it gets the file's bytes, with a type the browser accepts and a year-long immutable cache
    assert response.status_code == 200
    assert response.content == (site.root / site.asset_prefix / name).read_bytes()
    assert response.headers["content-type"] == content_type
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"


@pytest.mark.parametrize("path", ["/assets/0000000000000000/app/main.js", "/favicon.ico", "/nothing.css"])
def test_a_missing_file_is_a_404_not_the_page(app: ASGIApp, path: str) -> None:
    # Given the web chat served from a build
    with TestClient(app) as client:
        # When a file that is not in the build is requested (say, an asset of an older deploy)
        response = client.get(path)

    # Then it is an error the browser sees as one, not HTML it would try to run as a module
    assert response.status_code == 404
    assert "<title>OpenClaw</title>" not in response.text
    assert response.headers.get("cache-control") != "public, max-age=31536000, immutable"


# ---------------------------------------------------------------------------------------------- traversal


@pytest.mark.parametrize(
    "path",
    [
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/%2e%2e/secret.txt",
        "/assets/%2E%2E/%2E%2E/secret.txt",
        "/assets/..%2f..%2fsecret.txt",
    ],
)
def test_encoded_dot_dot_segments_cannot_read_a_file_next_to_the_build(app: ASGIApp, path: str) -> None:
    # Given a build with a secret file in the folder above it
    with TestClient(app) as client:
        # When an attacker asks for it with percent-encoded `..` (which clients send as they are)
        response = client.get(path)

    # Then the file is not served
    assert response.status_code == 404
    assert SECRET not in response.text


def test_the_page_reached_through_a_dot_dot_segment_is_still_revalidated(site: Build, app: ASGIApp) -> None:
    # Given / When the page is asked for through the assets folder
    with TestClient(app) as client:
        response = client.get("/assets/%2e%2e/index.html")

    # Then it is the page, with the page's cache header, never an asset's year-long one
    assert response.status_code == 200 and response.text == (site.root / "index.html").read_text()
    assert response.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    "path", ["/assets/../../secret.txt", "/../secret.txt", "/assets/../../build/../secret.txt"]
)
async def test_raw_dot_dot_segments_cannot_read_a_file_next_to_the_build(app: ASGIApp, path: str) -> None:
    # Given a build with a secret file in the folder above it
    # When a raw request carries literal `..` segments (no client normalises them away)
    status, body = await raw_get(app, path)

    # Then the file is not served
    assert status == 404
    assert SECRET.encode() not in body


async def test_raw_get_reads_a_file_of_the_build(site: Build, app: ASGIApp) -> None:
    # Given the helper the traversal test relies on
    # When it asks for a real asset
    status, body = await raw_get(app, f"/{site.asset_prefix}/styles.css")

    # Then it is served, so the 404s above come from the guard and not from a broken request
    assert (status, body) == (200, b"body { margin: 0; }\n")


@pytest.mark.parametrize(
    "path",
    [
        "/index.html%00.js",
        "/index.html%00",
        "/assets%00/x.js",
        "/" + "a" * 300 + ".js",
        "/assets/" + "%e2%82%ac" * 100 + ".css",
    ],
)
def test_a_name_no_file_can_have_is_a_404_not_a_server_error(app: ASGIApp, path: str) -> None:
    """CloudFront hands the path to S3 as an object key, and S3 answers a key it does not hold with an
    error of its own, never a 5xx: any UTF-8 text up to 1,024 bytes is a valid key name (S3 user guide,
    "Naming Amazon S3 objects"), whether or not a file system could store it (a NUL, a 300-byte name)."""
    # Given the web chat served from a build
    with TestClient(app, raise_server_exceptions=False) as client:
        # When a path with a NUL byte or a file name too long for the disk is asked for
        response = client.get(path)

    # Then it is not found, like any other missing file
    assert response.status_code == 404
    assert "<title>OpenClaw</title>" not in response.text


async def test_a_raw_nul_byte_in_the_path_is_a_404(app: ASGIApp) -> None:
    # Given / When a request carries a literal NUL in its path (no client would encode it away)
    status, body = await raw_get(app, "/index.html\x00.js")

    # Then it is not found, not a server error
    assert status == 404
    assert b"<title>OpenClaw</title>" not in body


@pytest.mark.parametrize(
    "path", ["/" + "a" * 1100 + ".js", "/" + ("a" * 250 + "/") * 20 + "x.js", "/" + "%e2%82%ac" * 400 + ".js"]
)
def test_a_key_over_s3s_1024_bytes_is_a_400(app: ASGIApp, path: str) -> None:
    """An object key is at most 1,024 bytes of UTF-8 (S3 user guide, "Naming Amazon S3 objects"), and S3
    answers a longer one as a bad request (KeyTooLongError, 400) rather than looking it up."""
    # Given the web chat served from a build
    with TestClient(app, raise_server_exceptions=False) as client:
        # When a file path longer than any key S3 can hold is asked for
        response = client.get(path)

    # Then it is refused as a bad request
    assert response.status_code == 400
    assert "KeyTooLongError" in response.text


# ------------------------------------------------------------------------------------ config and mounts


def test_config_json_is_the_runtime_config_revalidated_on_every_load(app: ASGIApp) -> None:
    # Given the web chat served with its runtime configuration
    with TestClient(app) as client:
        # When the page fetches /config.json
        response = client.get("/config.json")

    # Then it gets the configuration as JSON, never from a stale cache
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == RUNTIME_CONFIG
    assert response.headers["cache-control"] == "no-cache"


def test_config_json_is_asked_for_on_every_request(site: Build) -> None:
    # Given a runtime config that changes (the local stack learns its ports after start-up)
    calls: list[int] = []

    def runtime_config() -> dict[str, Any]:
        calls.append(1)
        return {"call": len(calls)}

    app = web_app(site.root, runtime_config, HEADERS)
    with TestClient(app) as client:
        # When the page fetches /config.json twice
        first, second = client.get("/config.json").json(), client.get("/config.json").json()

    # Then each answer is fresh
    assert (first, second) == ({"call": 1}, {"call": 2})


def test_a_mounted_app_is_reachable_beside_the_web_chat(app: ASGIApp) -> None:
    # Given the web chat with a helper app mounted under /_local/x
    with TestClient(app) as client:
        # When a request goes to the mount
        response = client.get("/_local/x/hello")

    # Then the mounted app answers, not the page
    assert response.status_code == 200
    assert response.text == "sub-app at /_local/x/hello"


@pytest.mark.parametrize("path", ["/", "/c/123", "ASSET", "/config.json", "/missing.js", "/_local/x/hello"])
def test_every_response_carries_the_security_headers(site: Build, app: ASGIApp, path: str) -> None:
    # Given the web chat served with a set of security headers
    url = f"/{site.asset_prefix}/app/main.js" if path == "ASSET" else path
    with TestClient(app) as client:
        # When anything is requested: the page, an asset, the config, a missing file, a mounted app
        response = client.get(url)

    # Then each header is on the response, once
    for name, value in HEADERS.items():
        assert response.headers.get_list(name) == [value], f"{url}: {name}"


# ------------------------------------------------------------------------------- headers from the template


def csp_directives(csp: str) -> dict[str, str]:
    pairs = (d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
    return {p[0]: (p[1] if len(p) > 1 else "") for p in pairs}


@pytest.fixture
def local_headers(template: dict[str, Any]) -> dict[str, str]:
    """The template's WebSecurityHeaders for stack `local`, connecting to two loopback ports."""
    resolver = Resolver(template, "local")
    return security_headers(resolver, ["'self'", "http://127.0.0.1:1", "ws://127.0.0.1:2"])


def test_the_deployed_csp_is_kept_except_where_loopback_needs_otherwise(
    local_headers: dict[str, str],
) -> None:
    # Given the template's response headers policy, localised for loopback APIs
    # When its Content-Security-Policy is read
    csp = local_headers["content-security-policy"]
    directives = csp_directives(csp)

    # Then it is as strict as the deployed one, but connects to the local APIs over plain http/ws
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self' http://127.0.0.1:1 ws://127.0.0.1:2"
    assert csp.count("connect-src") == 1
    assert "upgrade-insecure-requests" not in directives
    assert "amazonaws.com" not in csp
    assert "'unsafe-inline'" not in csp
    assert "'unsafe-eval'" not in csp
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"


def test_the_other_security_headers_come_from_the_template(local_headers: dict[str, str]) -> None:
    # Given the template's response headers policy, localised for loopback
    # When the other headers are read
    # Then framing, sniffing and referrers are refused as deployed, and HSTS is left out on plain http
    assert local_headers["x-frame-options"] == "DENY"
    assert local_headers["x-content-type-options"] == "nosniff"
    assert local_headers["referrer-policy"] == "no-referrer"
    assert "camera=()" in local_headers["permissions-policy"]
    assert local_headers["cross-origin-opener-policy"] == "same-origin"
    assert "strict-transport-security" not in local_headers


def test_localise_csp_replaces_connect_src_and_drops_tls_only_directives() -> None:
    # Given a hand-written policy with a remote connect-src and two TLS-only directives
    csp = (
        "default-src 'none'; connect-src 'self' https://api.example.com wss://ws.example.com; "
        "upgrade-insecure-requests; img-src 'self' data:; block-all-mixed-content;"
    )

    # When it is localised for two loopback ports
    localised = localise_csp(csp, ["'self'", "http://127.0.0.1:9", "ws://127.0.0.1:10"])

    # Then only connect-src changed, the TLS-only directives are gone and the order is kept
    assert localised == (
        "default-src 'none'; connect-src 'self' http://127.0.0.1:9 ws://127.0.0.1:10; img-src 'self' data:"
    )
