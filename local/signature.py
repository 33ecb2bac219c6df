"""Signature Version 4 checked as AWS checks it, for the stand-ins boto3 calls directly (ECS, `@connections`).

AWS rebuilds the canonical request from what arrived, signs it with the secret key the access key names,
and refuses the request unless the signatures match; it also refuses an unknown access key, a credential
scoped to another region, service or day, and a request whose timestamp is more than five minutes off its
own clock. The expected signature is computed by botocore's own signer over the request as received, so
the stand-ins accept exactly what boto3 (the Lambdas, the bridge) sends and nothing forged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials
from starlette.requests import Request

from local.resolve import REGION

ACCESS_KEY_ID = "local"
SECRET_ACCESS_KEY = "local"
LOCAL_CREDENTIALS: Mapping[str, str] = {ACCESS_KEY_ID: SECRET_ACCESS_KEY}
"""The only credentials the local stack hands out (to its functions and bridges): access key → secret."""

MAX_SKEW = timedelta(minutes=5)
"""How far a request's timestamp may be from the service's clock, either way."""

ALGORITHM = "AWS4-HMAC-SHA256"
MISSING_TOKEN = "MissingAuthenticationTokenException"
_BASIC_FORMAT = "%Y%m%dT%H%M%SZ"
_BASIC_PATTERN = re.compile(r"\d{8}T\d{6}Z")
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)


class SignatureRefused(Exception):
    """AWS would refuse the request before reading it: the error code it names, and its message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ReceivedRequest:
    """A request as it arrived: the path and query exactly as sent, every header (names in lower case)."""

    method: str
    raw_path: str
    query: str
    headers: Sequence[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of a header, or None."""
        return next((value for key, value in self.headers if key == name), None)


class SigV4Verifier:
    """Checks requests to one service in one region against the credentials a stand-in knows."""

    def __init__(
        self,
        credentials: Mapping[str, str],
        service: str,
        *,
        region: str = REGION,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.credentials = credentials
        self.service = service
        self.region = region
        self.clock = clock

    def verify(self, request: ReceivedRequest) -> str:
        """The access key that signed the request; SignatureRefused as AWS would refuse it."""
        authorization = request.header("authorization")
        if authorization is None or not authorization.startswith(f"{ALGORITHM} "):
            raise SignatureRefused(MISSING_TOKEN, "Missing Authentication Token")
        fields = _authorization_fields(authorization)
        scope = fields["Credential"].split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            raise SignatureRefused(
                "IncompleteSignatureException",
                f"Credential should be scoped with a valid terminator: 'aws4_request', not '{scope[-1]}'.",
            )
        access_key, day, region, service, _ = scope
        secret = self.credentials.get(access_key)
        # The stack hands out no session tokens: one presented names credentials nobody issued.
        if secret is None or request.header("x-amz-security-token") is not None:
            raise SignatureRefused(
                "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        signed = fields["SignedHeaders"].split(";")
        if "host" not in signed:
            raise SignatureRefused(
                "IncompleteSignatureException", "'Host' must be a 'SignedHeader' in the AWS Authorization."
            )
        timestamp = _timestamp(request)
        self._check_scope(region, service, day, timestamp)
        self._check_clock(timestamp)
        expected = self._signature(request, signed, Credentials(access_key, secret), timestamp)
        if not hmac.compare_digest(expected.encode(), fields["Signature"].encode("utf-8", "replace")):
            raise SignatureRefused("InvalidSignatureException", _MISMATCH)
        return access_key

    def _check_scope(self, region: str, service: str, day: str, timestamp: str) -> None:
        if region != self.region:
            raise SignatureRefused(
                "InvalidSignatureException", f"Credential should be scoped to a valid region, not '{region}'."
            )
        if service != self.service:
            raise SignatureRefused(
                "InvalidSignatureException",
                f"Credential should be scoped to correct service: '{self.service}'.",
            )
        if day != timestamp[:8]:
            raise SignatureRefused(
                "InvalidSignatureException",
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                f"'{day}' != '{timestamp[:8]}', from '{timestamp}'.",
            )

    def _check_clock(self, timestamp: str) -> None:
        signed_at = datetime.strptime(timestamp, _BASIC_FORMAT).replace(tzinfo=UTC)
        now = datetime.fromtimestamp(self.clock(), UTC)
        if signed_at < now - MAX_SKEW:
            raise SignatureRefused(
                "InvalidSignatureException",
                f"Signature expired: {timestamp} is now earlier than {_basic(now - MAX_SKEW)} "
                f"({_basic(now)} - 5 min.)",
            )
        if signed_at > now + MAX_SKEW:
            raise SignatureRefused(
                "InvalidSignatureException",
                f"Signature not yet current: {timestamp} is still later than {_basic(now + MAX_SKEW)} "
                f"({_basic(now)} + 5 min.)",
            )

    def _signature(
        self, request: ReceivedRequest, signed: Sequence[str], credentials: Credentials, timestamp: str
    ) -> str:
        """The signature botocore computes for the request as received (signed headers only)."""
        # Services other than S3 hash the payload themselves: a claimed hash (or UNSIGNED-PAYLOAD) must
        # be the body's, or the canonical request would not describe what arrived.
        claimed = request.header("x-amz-content-sha256")
        if "x-amz-content-sha256" in signed and claimed != hashlib.sha256(request.body).hexdigest():
            raise SignatureRefused("InvalidSignatureException", _MISMATCH)
        headers = HTTPHeaders()
        for name, value in request.headers:
            if name in signed:
                headers[name] = value  # appends: repeated headers are joined as the client joined them
        host = request.header("host") or "localhost"
        query = f"?{request.query}" if request.query else ""
        rebuilt = AWSRequest(method=request.method, url=f"http://{host}{request.raw_path}{query}")
        rebuilt.headers = headers
        rebuilt.data = request.body
        rebuilt.context["timestamp"] = timestamp
        signer = SigV4Auth(credentials, self.service, self.region)
        string_to_sign = signer.string_to_sign(rebuilt, signer.canonical_request(rebuilt))
        return str(signer.signature(string_to_sign, rebuilt))


async def received_request(request: Request) -> ReceivedRequest:
    """A Starlette request as the signature check sees it: path and query as sent, every header, the body."""
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    return ReceivedRequest(
        method=request.method,
        raw_path=raw_path.decode("latin-1"),
        query=request.scope.get("query_string", b"").decode("latin-1"),
        headers=[(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw],
        body=await request.body(),
    )


def _authorization_fields(authorization: str) -> dict[str, str]:
    """Credential, SignedHeaders and Signature of an Authorization header; SignatureRefused if one lacks."""
    fields: dict[str, str] = {}
    for part in authorization.removeprefix(f"{ALGORITHM} ").split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, value)
    missing = [name for name in ("Credential", "Signature", "SignedHeaders") if not fields.get(name)]
    if missing:
        raise SignatureRefused(
            "IncompleteSignatureException",
            " ".join(f"Authorization header requires '{name}' parameter." for name in missing),
        )
    return fields


def _timestamp(request: ReceivedRequest) -> str:
    """The request's signing time in ISO-8601 basic format, from X-Amz-Date or else Date."""
    amz_date = request.header("x-amz-date")
    if amz_date is not None:
        try:
            if _BASIC_PATTERN.fullmatch(amz_date):
                datetime.strptime(amz_date, _BASIC_FORMAT)
                return amz_date
        except ValueError:
            pass
        raise SignatureRefused(
            "IncompleteSignatureException", f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'."
        )
    date = request.header("date")
    if date is not None:
        try:
            return _basic(parsedate_to_datetime(date))
        except (TypeError, ValueError):
            pass
    raise SignatureRefused(
        "IncompleteSignatureException",
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
    )


def _basic(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_BASIC_FORMAT)
