"""The WebSocket API stand-in: $connect decides the upgrade, frames reach $default, @connections pushes."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

import local.websocket_api
from local.resolve import Resolver
from local.signature import LOCAL_CREDENTIALS
from local.template import TemplateError
from local.websocket_api import MAX_FRAME_BYTES, WebSocketApi, route_functions
from tests.local.servers import FakeFunctions, eventually, serve, sigv4_headers

BASE = "http://127.0.0.1"
SCOPE = "20260101/us-east-1/execute-api/aws4_request"


def signed(
    method: str, path: str, body: bytes = b"", *, service_name: str = "execute-api", **signing: Any
) -> dict[str, str]:
    """Headers of a management call signed as boto3 signs it (the stack's credentials unless overridden)."""
    return sigv4_headers(method, f"{BASE}{path}", body, service=service_name, **signing)


def signed_at(
    monkeypatch: pytest.MonkeyPatch, moment: datetime, method: str, path: str, body: bytes = b""
) -> dict[str, str]:
    """Headers of a management call signed by a client whose clock reads `moment`."""
    with monkeypatch.context() as clock:
        clock.setattr("botocore.auth.get_current_datetime", lambda: moment.replace(tzinfo=None))
        return signed(method, path, body)


@pytest.fixture
def functions(template: dict[str, Any]) -> FakeFunctions:
    return FakeFunctions(Resolver(template, "local"))


@pytest.fixture
def api(functions: FakeFunctions) -> WebSocketApi:
    return WebSocketApi(
        functions.host.resolver, functions.host, "WebSocketApi", credentials=LOCAL_CREDENTIALS
    )


@pytest.fixture
def client(api: WebSocketApi) -> Iterator[TestClient]:
    # One client (one event loop) for the sockets and the management calls, as one server would be.
    with TestClient(api.app, base_url=BASE) as test_client:
        yield test_client


def connection_id(functions: FakeFunctions) -> str:
    """The id API Gateway gave the last connection, as $connect saw it."""
    return str(functions.calls["WsConnectFunction"][-1]["requestContext"]["connectionId"])


def test_the_routes_of_the_template_lead_to_their_functions(template: dict[str, Any]) -> None:
    # Given the real template (Route → Integration → function ARN)
    # When its WebSocket routes are followed
    # Then each route key reaches its function
    assert route_functions(template) == {
        "$connect": "WsConnectFunction",
        "$default": "WsMessageFunction",
        "$disconnect": "WsDisconnectFunction",
    }


def test_a_route_without_a_lambda_integration_is_a_template_error(template: dict[str, Any]) -> None:
    # Given a route whose target is not an integration of a function
    template = copy.deepcopy(template)
    template["Resources"]["WsDefaultRoute"]["Properties"]["Target"] = "integrations/elsewhere"

    # When the routes are read
    # Then the error names the route rather than leaving it unserved
    with pytest.raises(TemplateError, match="WsDefaultRoute"):
        route_functions(template)


@pytest.mark.parametrize("status", [401, 403, 500])
def test_a_refusing_connect_function_refuses_the_upgrade(
    client: TestClient, functions: FakeFunctions, api: WebSocketApi, status: int
) -> None:
    # Given $connect answers with an error status (a bad token)
    functions.replies["WsConnectFunction"] = lambda event: {"statusCode": status}

    # When a client tries to connect
    with pytest.raises(WebSocketDenialResponse) as refused, client.websocket_connect("/prod?token=bad"):
        pass  # pragma: no cover - never reached

    # Then the upgrade is refused with that HTTP status, and nothing else runs
    assert refused.value.status_code == status
    assert functions.calls["WsMessageFunction"] == []
    assert functions.calls["WsDisconnectFunction"] == []
    assert api.connections == {}


def test_a_connect_function_that_raises_refuses_the_upgrade_with_500(
    client: TestClient, functions: FakeFunctions
) -> None:
    # Given $connect raises
    def explode(event: dict[str, Any]) -> Any:
        raise RuntimeError("boom")

    functions.replies["WsConnectFunction"] = explode

    # When a client connects
    with pytest.raises(WebSocketDenialResponse) as refused, client.websocket_connect("/prod"):
        pass  # pragma: no cover

    # Then it is refused as API Gateway does when the integration fails
    assert refused.value.status_code == 500


def upgrade(port: int, target: str) -> tuple[bytes, float]:
    """Send a WebSocket upgrade for `target` over a raw socket: everything the server answered before
    closing (or within 10 s), and how long that took."""
    request = (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    started = time.monotonic()
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(request.encode())
        with contextlib.suppress(TimeoutError):
            while chunk := raw.recv(65536):
                answer += chunk
                if answer.startswith(b"HTTP/1.1 101"):
                    break
    return answer, time.monotonic() - started


def test_an_upgrade_with_an_overlong_url_is_answered_414_and_closed_promptly(
    functions: FakeFunctions, api: WebSocketApi
) -> None:
    """API Gateway documents a 4096-character limit on the URL of a WebSocket API ("Quotas for
    configuring and running a WebSocket API"); a longer upgrade request is answered with an error
    status at once, never left waiting. 414 is what HTTP names for it (and what the server library
    answers for a request line it cannot hold)."""
    # Given the API served as the stack serves it
    with serve(api.app) as server:
        # When upgrades arrive whose URL is just inside the limit, just over it, and far over (8 KiB+)
        fits = upgrade(server.port, "/prod?token=" + "a" * 3900)
        over = upgrade(server.port, "/prod?token=" + "a" * 5000)
        far_over = [upgrade(server.port, "/prod?token=" + "a" * n) for n in (9000, 70_000)]

    # Then the one within the limit connects, the others are answered 414 and closed within a second
    assert fits[0].startswith(b"HTTP/1.1 101")
    for answer, seconds in (over, *far_over):
        assert answer.startswith(b"HTTP/1.1 414"), answer[:80]
        assert seconds < 1
    # ... and only the connection within the limit reached $connect
    assert len(functions.calls["WsConnectFunction"]) == 1


def test_a_refused_connect_is_logged_as_traffic_not_as_a_server_error(
    functions: FakeFunctions, api: WebSocketApi, caplog: pytest.LogCaptureFixture
) -> None:
    """A `$connect` integration that answers non-2xx makes API Gateway refuse the upgrade with that
    status ("Use route responses… $connect"): normal traffic (an expired token), not a failure."""
    # Given $connect refuses (a bad token), the API served as the stack serves it
    functions.replies["WsConnectFunction"] = lambda event: {"statusCode": 401, "body": "Unauthorized"}
    caplog.set_level(logging.INFO)
    with serve(api.app) as server:
        # When a browser tries to connect
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(f"ws://127.0.0.1:{server.port}/prod?token=expired", open_timeout=10)
        eventually(lambda: "refused" in caplog.text, what="the refusal to be logged")

    # Then it is refused with 401, logged once as information with the status, and nothing is an error
    assert refused.value.response.status_code == 401
    (logged,) = [r for r in caplog.records if r.name == "local.websocket_api"]
    assert logged.levelno == logging.INFO and "401" in logged.getMessage()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_an_accepting_connect_function_lets_the_client_in_with_the_connect_event(
    client: TestClient, functions: FakeFunctions, api: WebSocketApi
) -> None:
    # Given $connect accepts
    # When a browser connects with its token in the query string
    with client.websocket_connect("/prod?token=abc.def.ghi", headers={"X-Client": "web"}):
        # Then the connection is open and $connect saw what API Gateway passes
        (event,) = functions.calls["WsConnectFunction"]
        context = event["requestContext"]
        assert context["routeKey"] == "$connect"
        assert context["eventType"] == "CONNECT"
        assert context["stage"] == "prod"
        assert context["connectionId"] in api.connections
        assert context["domainName"] == api.host
        assert event["queryStringParameters"] == {"token": "abc.def.ghi"}
        headers = {name.lower(): value for name, value in event["headers"].items()}
        assert headers["x-client"] == "web"
        assert headers["host"] == api.host
        assert "x-forwarded-for" in headers


def test_a_frame_reaches_the_default_route_and_its_reply_comes_back(
    client: TestClient, functions: FakeFunctions
) -> None:
    # Given $default answers every frame with a body (a two-way route)
    functions.replies["WsMessageFunction"] = lambda event: {
        "statusCode": 200,
        "body": json.dumps({"echo": json.loads(event["body"])}),
    }

    with client.websocket_connect("/prod?token=t") as ws:
        # When the client sends a frame
        ws.send_text(json.dumps({"action": "ping", "n": 1}))

        # Then the function's body comes back to the caller
        assert json.loads(ws.receive_text()) == {"echo": {"action": "ping", "n": 1}}

    # ... and $default saw the frame on the same connection
    (event,) = functions.calls["WsMessageFunction"]
    assert event["body"] == '{"action": "ping", "n": 1}'
    assert event["isBase64Encoded"] is False
    assert event["requestContext"]["routeKey"] == "$default"
    assert event["requestContext"]["eventType"] == "MESSAGE"
    assert event["requestContext"]["connectionId"] == connection_id(functions)


def test_a_failing_default_route_tells_the_caller(client: TestClient, functions: FakeFunctions) -> None:
    # Given $default raises
    def explode(event: dict[str, Any]) -> Any:
        raise RuntimeError("boom")

    functions.replies["WsMessageFunction"] = explode

    with client.websocket_connect("/prod") as ws:
        # When a frame arrives
        ws.send_text("{}")

        # Then the caller gets API Gateway's error frame and stays connected
        reply = json.loads(ws.receive_text())
        assert reply["message"] == "Internal server error"
        assert reply["connectionId"] == connection_id(functions)
        ws.send_text("{}")
        assert json.loads(ws.receive_text())["message"] == "Internal server error"


def test_closing_the_socket_runs_the_disconnect_route(
    client: TestClient, functions: FakeFunctions, api: WebSocketApi
) -> None:
    # Given an open connection
    with client.websocket_connect("/prod") as ws:
        opened = connection_id(functions)

        # When the client closes it
        ws.close(1000)

        # Then $disconnect runs for that connection with the close code, and the connection is forgotten
        (event,) = eventually(lambda: functions.calls["WsDisconnectFunction"], what="$disconnect")
    assert event["requestContext"]["connectionId"] == opened
    assert event["requestContext"]["eventType"] == "DISCONNECT"
    assert event["requestContext"]["disconnectStatusCode"] == 1000
    assert api.connections == {}


def test_a_frame_over_the_limit_closes_the_connection(client: TestClient, functions: FakeFunctions) -> None:
    # Given an open connection
    with client.websocket_connect("/prod") as ws:
        # When a frame over API Gateway's 128 KiB arrives
        ws.send_text("x" * (MAX_FRAME_BYTES + 1))

        # Then the connection is closed with 1009 and the function never sees the frame
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 1009
    assert functions.calls["WsMessageFunction"] == []


def test_management_calls_need_a_sigv4_signature(client: TestClient, functions: FakeFunctions) -> None:
    # Given an open connection
    with client.websocket_connect("/prod") as ws:
        target = f"/prod/@connections/{connection_id(functions)}"

        # When the management API is called without a SigV4 Authorization header
        responses = [
            client.post(target, content=b"injected"),
            client.post(target, content=b"injected", headers={"Authorization": "Bearer x"}),
            client.get(target),
            client.delete(target),
        ]

        # Then each is refused as API Gateway refuses it, and nothing reached the socket
        assert [r.status_code for r in responses] == [403, 403, 403, 403]
        assert responses[0].json() == {"message": "Missing Authentication Token"}
        assert responses[0].headers["x-amzn-ErrorType"] == "ForbiddenException"
        client.post(target, content=b"signed", headers=signed("POST", target, b"signed"))
        assert ws.receive_text() == "signed"


def refusal(response: Any) -> tuple[int, str, str]:
    """(status, API Gateway's error type, message) of a refused management call."""
    return response.status_code, response.headers.get("x-amzn-ErrorType", ""), response.json()["message"]


def test_a_forged_or_foreign_signature_is_refused_and_delivers_nothing(
    client: TestClient, functions: FakeFunctions
) -> None:
    """API Gateway checks a management call's SigV4 signature, not just its presence.

    AWS documents (IAM "Troubleshoot Signature Version 4 signing"; API Gateway knowledge centre on SigV4
    mismatches) that an API behind IAM auth answers 403 when the access key is unknown ("The security
    token included in the request is invalid."), when the signature differs from the one it recomputes
    from the request ("The request signature we calculated does not match the signature you provided…"),
    and when the Authorization header lacks a part of the signature.
    """
    # Given an open connection
    with client.websocket_connect("/prod") as ws:
        target = f"/prod/@connections/{connection_id(functions)}"
        other = f"/prod/@connections/{GONE.rsplit('/', 1)[1]}"

        # When calls arrive with forged, incomplete or tampered signatures
        unknown_key = client.post(
            target, content=b"x", headers=signed("POST", target, b"x", access_key="AKIA0")
        )
        wrong_secret = client.post(target, content=b"x", headers=signed("POST", target, b"x", secret="guess"))
        other_body = client.post(target, content=b"forged", headers=signed("POST", target, b"x"))
        other_path = client.post(target, content=b"x", headers=signed("POST", other, b"x"))
        other_method = client.delete(target, headers=signed("GET", target))
        no_signature = client.post(
            target,
            content=b"x",
            headers={"Authorization": f"AWS4-HMAC-SHA256 Credential=local/{SCOPE}"},
        )

        # Then each is refused as API Gateway refuses it ...
        assert refusal(unknown_key) == (
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
        for tampered in (wrong_secret, other_body, other_path, other_method):
            status, error_type, message = refusal(tampered)
            assert (status, error_type) == (403, "InvalidSignatureException")
            assert message.startswith("The request signature we calculated does not match the signature")
        assert refusal(no_signature)[:2] == (403, "IncompleteSignatureException")
        assert "'Signature'" in refusal(no_signature)[2]

        # ... and nothing reached the socket: the next frame is the first genuine push
        client.post(target, content=b"genuine", headers=signed("POST", target, b"genuine"))
        assert ws.receive_text() == "genuine"


def test_a_signature_for_another_region_service_or_time_is_refused(
    client: TestClient, functions: FakeFunctions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A valid signature only counts where and when it was made.

    AWS documents that a signing key is scoped to one date, Region and service, and that a signed request
    must reach AWS within five minutes of its timestamp (IAM "AWS Signature Version 4 for API requests");
    API Gateway refuses the others with 403 ("Credential should be scoped to…", "Signature expired…").
    """
    with client.websocket_connect("/prod") as ws:
        target = f"/prod/@connections/{connection_id(functions)}"

        # When calls are signed for another Region or service, or ten minutes from now either way
        elsewhere = client.post(
            target, content=b"x", headers=signed("POST", target, b"x", region="eu-west-1")
        )
        other_service = client.post(
            target, content=b"x", headers=signed("POST", target, b"x", service_name="ecs")
        )
        now = datetime.now(UTC)
        stale_headers = signed_at(monkeypatch, now - timedelta(minutes=10), "POST", target, b"x")
        future_headers = signed_at(monkeypatch, now + timedelta(minutes=10), "POST", target, b"x")
        recent_headers = signed_at(monkeypatch, now - timedelta(minutes=4), "POST", target, b"recent")
        stale = client.post(target, content=b"x", headers=stale_headers)
        future = client.post(target, content=b"x", headers=future_headers)
        recent = client.post(target, content=b"recent", headers=recent_headers)

        # Then they are refused with the reason, while a call signed four minutes ago still goes through
        assert refusal(elsewhere)[:2] == (403, "InvalidSignatureException")
        assert "eu-west-1" in refusal(elsewhere)[2]
        assert refusal(other_service)[:2] == (403, "InvalidSignatureException")
        assert "execute-api" in refusal(other_service)[2]
        assert refusal(stale)[:2] == (403, "InvalidSignatureException")
        assert refusal(stale)[2].startswith("Signature expired")
        assert refusal(future)[:2] == (403, "InvalidSignatureException")
        assert refusal(future)[2].startswith("Signature not yet current")
        assert recent.status_code == 200
        assert ws.receive_text() == "recent"


def test_an_unsigned_payload_is_refused(client: TestClient, functions: FakeFunctions) -> None:
    """Only S3 accepts `X-Amz-Content-SHA256: UNSIGNED-PAYLOAD`; every other SigV4 service (API Gateway
    among them) signs the payload's own SHA-256, as AWS's "Create a signed AWS API request" describes the
    canonical request's last line, so a signature over a claimed hash that is not the body's fails."""
    with client.websocket_connect("/prod") as ws:
        target = f"/prod/@connections/{connection_id(functions)}"

        # When a call signs the literal UNSIGNED-PAYLOAD, or a hash of another body, instead of its own
        unsigned = {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}
        claimed = {"X-Amz-Content-SHA256": hashlib.sha256(b"x").hexdigest()}
        responses = [
            client.post(target, content=b"forged", headers=signed("POST", target, b"x", headers=unsigned)),
            client.post(target, content=b"forged", headers=signed("POST", target, b"x", headers=claimed)),
        ]

        # Then both are refused, and a payload-signed call (what boto3 sends) still goes through
        assert [refusal(r)[:2] for r in responses] == [(403, "InvalidSignatureException")] * 2
        good = {"X-Amz-Content-SHA256": hashlib.sha256(b"good").hexdigest()}
        client.post(target, content=b"good", headers=signed("POST", target, b"good", headers=good))
        assert ws.receive_text() == "good"


def test_post_to_a_connection_delivers_the_text(client: TestClient, functions: FakeFunctions) -> None:
    # Given an open connection
    with client.websocket_connect("/prod") as ws:
        target = f"/prod/@connections/{connection_id(functions)}"

        # When the control plane posts to it, twice
        reply = '{"type":"reply","text":"héllo"}'.encode()
        first = client.post(target, content=reply, headers=signed("POST", target, reply))
        second = client.post(target, content=b"second", headers=signed("POST", target, b"second"))

        # Then the client receives both, in order
        assert (first.status_code, second.status_code) == (200, 200)
        assert ws.receive_text() == '{"type":"reply","text":"héllo"}'
        assert ws.receive_text() == "second"


def test_get_connection_describes_it(client: TestClient, functions: FakeFunctions) -> None:
    # Given an open connection
    with client.websocket_connect("/prod", headers={"User-Agent": "test-browser"}):
        # When the management API describes it
        target = f"/prod/@connections/{connection_id(functions)}"
        response = client.get(target, headers=signed("GET", target))

        # Then it says when it connected and who it is, under API Gateway's wire names
        assert response.status_code == 200
        body = response.json()
        assert body["connectedAt"].endswith("Z")
        assert body["lastActiveAt"].endswith("Z")
        assert body["identity"]["userAgent"] == "test-browser"


def test_delete_connection_closes_the_socket_and_runs_disconnect(
    client: TestClient, functions: FakeFunctions, api: WebSocketApi
) -> None:
    # Given an open connection
    with client.websocket_connect("/prod") as ws:
        opened = connection_id(functions)

        # When the control plane deletes it
        target = f"/prod/@connections/{opened}"
        response = client.delete(target, headers=signed("DELETE", target))

        # Then the client is disconnected, $disconnect says why, and later posts are Gone
        assert response.status_code == 204
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 1000
        ws.close(1000)  # the client's half of the closing handshake (TestClient leaves it to the test)
        (event,) = eventually(lambda: functions.calls["WsDisconnectFunction"], what="$disconnect")
    assert event["requestContext"]["connectionId"] == opened
    assert event["requestContext"]["disconnectReason"] == "Connection closed by the management API"
    assert client.post(target, content=b"late", headers=signed("POST", target, b"late")).status_code == 410


GONE = "/prod/@connections/bm9uZXhpc3RlbnQ="


def test_an_unknown_connection_is_gone(client: TestClient) -> None:
    # Given no such connection
    # When any management call names it
    responses = [
        client.post(GONE, content=b"x", headers=signed("POST", GONE, b"x")),
        client.get(GONE, headers=signed("GET", GONE)),
        client.delete(GONE, headers=signed("DELETE", GONE)),
    ]

    # Then each is a 410 GoneException, which the control plane takes as "forget this connection"
    for response in responses:
        assert response.status_code == 410
        assert response.headers["x-amzn-ErrorType"] == "GoneException"


def test_a_connection_id_containing_a_slash_can_be_managed(
    client: TestClient, functions: FakeFunctions, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a connection whose base64 id contains "/" and "+" (about one in three do)
    monkeypatch.setattr(local.websocket_api, "new_id", lambda: "Ab/cD+eF9gH=")

    with client.websocket_connect("/prod") as ws:
        assert connection_id(functions) == "Ab/cD+eF9gH="

        # When it is posted to with the id percent-encoded (as boto3 sends it) and raw
        encoded_path, raw_path = "/prod/@connections/Ab%2FcD%2BeF9gH%3D", "/prod/@connections/Ab/cD+eF9gH="
        encoded = client.post(encoded_path, content=b"one", headers=signed("POST", encoded_path, b"one"))
        raw = client.post(raw_path, content=b"two", headers=signed("POST", raw_path, b"two"))

        # Then both reach the socket
        assert (encoded.status_code, raw.status_code) == (200, 200)
        assert ws.receive_text() == "one"
        assert ws.receive_text() == "two"


def test_the_management_api_works_with_boto3_over_a_real_socket(
    functions: FakeFunctions, api: WebSocketApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the API on a loopback port, a client connected over a real WebSocket, with a "/" in its id
    monkeypatch.setattr(local.websocket_api, "new_id", lambda: "Xy/Z+1234ab=")
    with serve(api.app) as server, ws_connect(f"ws://127.0.0.1:{server.port}/prod?token=t") as socket:
        management = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=f"{server.url}/prod",
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        connection = connection_id(functions)

        # When the control plane pushes with boto3 (SigV4-signed, id percent-encoded)
        management.post_to_connection(ConnectionId=connection, Data=b'{"type":"status"}')

        # Then the client receives it, and boto3 can describe and delete the connection
        assert socket.recv(timeout=10) == '{"type":"status"}'
        described = management.get_connection(ConnectionId=connection)
        assert described["Identity"]["SourceIp"] == "127.0.0.1"
        assert described["ConnectedAt"].year >= 2024
        management.delete_connection(ConnectionId=connection)
        with pytest.raises(ConnectionClosed):
            socket.recv(timeout=10)

        # ... after which a push raises the GoneException the control plane handles
        eventually(lambda: functions.calls["WsDisconnectFunction"], what="$disconnect")
        with pytest.raises(management.exceptions.GoneException):
            management.post_to_connection(ConnectionId=connection, Data=b"late")
