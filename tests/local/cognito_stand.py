"""moto holding the stack's user pool, with the local Cognito front mounted as the local web server mounts
it; shared by the tests of the front (pycognito) and of the web chat's client (Node)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import jwt
from pycognito.aws_srp import AWSSRP
from starlette.applications import Starlette
from starlette.routing import Mount

from local.aws import EmbeddedAws
from local.cognito import cognito_app
from local.resolve import Resolver
from tests.local.conftest import forget_everything
from tests.local.servers import serve

PASSWORD = "Correct-horse-9-battery"
MOUNT = "/_local/cognito"


@dataclass
class Stand:
    """moto with the template's pool, and the front mounted where the local web server mounts it."""

    aws: EmbeddedAws
    endpoint: str
    clock: list[float]
    """What the front's clock reads (monotonic seconds); a test moves it to expire sessions."""

    @property
    def pool_id(self) -> str:
        return self.aws.user_pool_id

    @property
    def client_id(self) -> str:
        return self.aws.client_id

    def front(self) -> Any:
        """A boto3 Cognito client that talks to the front."""
        return boto3.client(
            "cognito-idp",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def srp(self, username: str, password: str) -> AWSSRP:
        """pycognito's SRP client, pointed at the front."""
        return AWSSRP(username, password, self.pool_id, self.client_id, client=self.front())

    def call(self, target: str, body: Any, *, raw: bytes | None = None) -> httpx.Response:
        """One request of Cognito's JSON protocol to the front."""
        content = raw if raw is not None else httpx.Request("POST", "/", json=body).content
        return httpx.post(
            self.endpoint,
            content=content,
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": f"AWSCognitoIdentityProviderService.{target}",
            },
        )

    def new_user(self, *, password: str = PASSWORD, permanent: bool = True) -> str:
        """A user created by the administrator (FORCE_CHANGE_PASSWORD unless `permanent`)."""
        email = f"{uuid.uuid4().hex[:12]}@example.com"
        admin = self.aws.client("cognito-idp")
        admin.admin_create_user(
            UserPoolId=self.pool_id,
            Username=email,
            UserAttributes=[{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}],
            TemporaryPassword=password,
            MessageAction="SUPPRESS",
        )
        if permanent:
            admin.admin_set_user_password(
                UserPoolId=self.pool_id, Username=email, Password=password, Permanent=True
            )
        return email

    def verified_claims(self, id_token: str) -> dict[str, Any]:
        """The ID token's claims, its signature checked with moto's JWKS."""
        keys = jwt.PyJWKClient(f"{self.aws.url}/{self.pool_id}/.well-known/jwks.json")
        claims: dict[str, Any] = jwt.decode(
            id_token,
            keys.get_signing_key_from_jwt(id_token).key,
            algorithms=["RS256"],
            audience=self.client_id,
            issuer=f"https://cognito-idp.us-east-1.amazonaws.com/{self.pool_id}",
        )
        return claims


@contextmanager
def running_stand(template: dict[str, Any], state_dir: Path) -> Iterator[Stand]:
    """moto on a free port with the template's pool and app client, and the front in front of it."""
    forget_everything()
    aws = EmbeddedAws(state_dir, 0)
    aws.start()
    try:
        aws.create_resources(Resolver(template, "local"), template)
        clock = [1000.0]
        web = Starlette(routes=[Mount(MOUNT, app=cognito_app(aws.url, clock=lambda: clock[0]))])
        with serve(web) as server:
            yield Stand(aws=aws, endpoint=f"{server.url}{MOUNT}/", clock=clock)
    finally:
        aws.stop()
        forget_everything()
