"""moto's server embedded on loopback, holding what the template declares, kept across restarts.

DynamoDB and S3 are snapshotted (pickled moto backends, so S3 version ids survive: the bridge's manifest
pins them) every few seconds when asked and at shutdown. Cognito users are re-created with their old
`sub` (every table is keyed by it) in a pool whose id is derived from its name, so tokens and data stay
valid across restarts. SSM is seeded afresh on every start from the environment.
"""

from __future__ import annotations

import contextlib
import copyreg
import io
import json
import logging
import os
import pickle
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import boto3
from moto.backends import get_backend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.s3.utils import _VersionedKeyStore
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from local.resolve import ACCOUNT, REGION, Resolver
from local.template import create_tables

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from mypy_boto3_cognito_idp import CognitoIdentityProviderClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_ssm import SSMClient

# Must be set before moto builds a pool: ids then depend on the pool's name and settings only.
os.environ["MOTO_COGNITO_IDP_USER_POOL_ID_STRATEGY"] = "HASH"
os.environ["MOTO_COGNITO_IDP_USER_POOL_CLIENT_ID_STRATEGY"] = "HASH"

PERSISTED_SERVICES = ("dynamodb", "s3")
SNAPSHOT_VERSION = 1
DEMO_USERNAME = "demo@example.com"
_CLIENT_SETTINGS = (
    "GenerateSecret",
    "ExplicitAuthFlows",
    "PreventUserExistenceErrors",
    "IdTokenValidity",
    "AccessTokenValidity",
    "RefreshTokenValidity",
    "TokenValidityUnits",
)


class StateError(Exception):
    """Saved local state cannot be loaded; the message says how to start afresh."""


@dataclass(frozen=True)
class User:
    """A Cognito user as the local stack keeps it across restarts."""

    username: str
    password: str
    sub: str


class _OneRequestAtATime(ThreadedMotoServer):
    """moto's threaded server, answering one request at a time.

    moto's backends are not thread-safe: a DynamoDB transaction that fails puts back copies of every table
    it touched, taken when it began, so a write another thread made meanwhile (a bridge deleting an
    answered Inbox item, another message's transaction) silently disappears. DynamoDB has no such
    effect. The functions and the bridges call it from several threads and processes, so requests
    are taken in turn; each takes milliseconds.
    """

    def _server_entry(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()

        def serial(environ: dict[str, Any], start_response: Any) -> Any:
            with lock:
                # The body is produced while the lock is held: moto builds it from live backend objects.
                return list(app(environ, start_response))

        self._server = make_server(
            self._ip_address, self._port, serial, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


class EmbeddedAws:
    """moto's server on a loopback port, plus the resources of the stack."""

    def __init__(self, state_dir: Path, port: int) -> None:
        self.state_dir = state_dir
        self.port = port
        self.server: ThreadedMotoServer | None = None
        self.snapshot_path = state_dir / "aws-state.pickle"
        self.users_path = state_dir / "cognito-users.json"
        self._snapshot_lock = threading.Lock()
        self.user_pool_id = ""
        self.client_id = ""
        self.bucket = ""

    @property
    def url(self) -> str:
        """moto's base URL (every AWS_ENDPOINT_URL points here except ECS and API Gateway)."""
        return f"http://127.0.0.1:{self.port}"

    @overload
    def client(self, service: Literal["cognito-idp"]) -> CognitoIdentityProviderClient: ...
    @overload
    def client(self, service: Literal["dynamodb"]) -> DynamoDBClient: ...
    @overload
    def client(self, service: Literal["s3"]) -> S3Client: ...
    @overload
    def client(self, service: Literal["ssm"]) -> SSMClient: ...
    def client(self, service: Literal["cognito-idp", "dynamodb", "s3", "ssm"]) -> BaseClient:
        """A boto3 client for this moto."""
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Load saved state, then serve."""
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._load_snapshot()
        self.server = _OneRequestAtATime(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        if self.port == 0:
            self.port = int(self.server._server.server_port)  # type: ignore[union-attr]

    def stop(self) -> None:
        """Stop serving, then save the state (nothing can change it any more: the snapshot is exact)."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        if not self.snapshot():
            raise StateError(
                f"the final snapshot of the local AWS state failed; {self.snapshot_path} is older"
            )

    # ------------------------------------------------------------------------------------ resources

    def create_resources(self, resolver: Resolver, template: dict[str, Any]) -> None:
        """Tables, the data bucket and the user pool of the template (existing ones are kept)."""
        create_tables(self.client("dynamodb"), template, resolver.stack_name, exist_ok=True)
        s3 = self.client("s3")
        for logical_id in resolver.resources("AWS::S3::Bucket"):
            name = resolver.physical_id(logical_id)
            with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
                s3.create_bucket(Bucket=name)
            properties = resolver.template["Resources"][logical_id].get("Properties") or {}
            versioning = (properties.get("VersioningConfiguration") or {}).get("Status")
            if versioning == "Enabled":
                s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
            if logical_id == "DataBucket":
                self.bucket = name
        self._create_user_pool(resolver)

    def _create_user_pool(self, resolver: Resolver) -> None:
        pools = resolver.resources("AWS::Cognito::UserPool")
        clients = resolver.resources("AWS::Cognito::UserPoolClient")
        if len(pools) != 1 or len(clients) != 1:
            raise StateError("the local stack expects exactly one Cognito user pool and one app client")
        ((pool_logical, pool),) = pools.items()
        ((client_logical, client_spec),) = clients.items()
        cognito = self.client("cognito-idp")
        self.user_pool_id = _user_pool(cognito, resolver.resolve(pool.get("Properties") or {}), resolver)
        client_properties = {
            k: v for k, v in (client_spec.get("Properties") or {}).items() if k != "UserPoolId"
        }
        self.client_id = _app_client(
            cognito, self.user_pool_id, resolver.resolve(client_properties), resolver
        )
        resolver.physical_ids[pool_logical] = self.user_pool_id
        resolver.physical_ids[client_logical] = self.client_id
        for user in self.saved_users():
            self._put_user(user)

    # ------------------------------------------------------------------------------------ users

    def saved_users(self) -> list[User]:
        """Users kept from earlier runs."""
        if not self.users_path.exists():
            return []
        try:
            data = json.loads(self.users_path.read_text())
            return [User(**u) for u in data["users"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"{self.users_path} is damaged ({exc}); run `make dev-reset`") from exc

    def ensure_user(self, username: str, password: str | None = None) -> User:
        """A confirmed user (created with a generated password when new); kept across restarts."""
        users = {u.username: u for u in self.saved_users()}
        if username in users and (password is None or users[username].password == password):
            return users[username]
        user = User(
            username=username,
            password=password or _generate_password(),
            sub=users[username].sub if username in users else "",
        )
        user = self._put_user(user)
        users[username] = user
        self._save_users(list(users.values()))
        return user

    def _put_user(self, user: User) -> User:
        cognito = self.client("cognito-idp")
        try:
            cognito.admin_get_user(UserPoolId=self.user_pool_id, Username=user.username)
        except cognito.exceptions.UserNotFoundException:
            cognito.admin_create_user(
                UserPoolId=self.user_pool_id,
                Username=user.username,
                UserAttributes=[
                    {"Name": "email", "Value": user.username},
                    {"Name": "email_verified", "Value": "true"},
                ],
                MessageAction="SUPPRESS",
            )
        cognito.admin_set_user_password(
            UserPoolId=self.user_pool_id, Username=user.username, Password=user.password, Permanent=True
        )
        if user.sub:
            # moto gives every new user a random sub; the data of a returning user is keyed by the old one.
            backend = get_backend("cognito-idp")[ACCOUNT][REGION]
            stored = backend.user_pools[self.user_pool_id]._get_user(user.username)
            stored.id = user.sub
            stored.update_attributes([{"Name": "sub", "Value": user.sub}])
            return user
        attrs = cognito.admin_get_user(UserPoolId=self.user_pool_id, Username=user.username)["UserAttributes"]
        sub = next(a["Value"] for a in attrs if a["Name"] == "sub")
        return User(username=user.username, password=user.password, sub=sub)

    def _save_users(self, users: list[User]) -> None:
        _write_atomically(
            self.users_path,
            json.dumps({"users": [u.__dict__ for u in users]}, indent=2).encode(),
            mode=0o600,
        )

    # ------------------------------------------------------------------------------------ SSM

    def put_secret(self, name: str, value: str) -> None:
        """A SecureString parameter, as `scripts/` would write it in AWS."""
        self.client("ssm").put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)

    # ------------------------------------------------------------------------------------ snapshots

    def snapshot(self) -> bool:
        """Save DynamoDB and S3 atomically; retried when a request changed them mid-way. False if it never
        got a consistent copy (the previous snapshot stays)."""
        with self._snapshot_lock:
            for attempt in range(20):
                if attempt:
                    time.sleep(0.05)
                try:
                    blob = pickle.dumps(
                        {
                            "version": SNAPSHOT_VERSION,
                            "services": {
                                s: _dumps(get_backend(s))  # type: ignore[call-overload]
                                for s in PERSISTED_SERVICES
                            },
                        }
                    )
                    break
                except RuntimeError:  # "dictionary changed size during iteration"
                    continue
            else:
                logging.getLogger("local").warning("could not take a consistent snapshot; will retry")
                return False
            _write_atomically(self.snapshot_path, blob, mode=0o600)
            return True

    def _load_snapshot(self) -> None:
        if not self.snapshot_path.exists():
            return
        try:
            data = pickle.loads(self.snapshot_path.read_bytes())  # our own file, mode 600
            if data.get("version") != SNAPSHOT_VERSION:
                raise ValueError(f"snapshot version {data.get('version')}")
            for service in PERSISTED_SERVICES:
                loaded = pickle.loads(data["services"][service])
                backend = get_backend(service)  # type: ignore[call-overload]
                backend.clear()
                backend.update(loaded)
                if service == "s3":
                    # A bucket registers its name in this index when created, not when unpickled; without
                    # it, create_bucket would replace the restored bucket with an empty one.
                    for account_id, partitions in backend.items():
                        for partition, s3 in partitions.items():
                            for name in s3.buckets:
                                backend.bucket_accounts[name] = (partition, account_id)
        except Exception as exc:
            raise StateError(
                f"the saved local state in {self.snapshot_path} cannot be loaded ({type(exc).__name__}: "
                f"{exc}); it was written by another version. `make dev-reset` starts afresh (it deletes "
                "the local users, conversations and agent files)"
            ) from exc


def _user_pool(cognito: CognitoIdentityProviderClient, properties: dict[str, Any], resolver: Resolver) -> str:
    """The id of the template's user pool, created unless a pool of its name exists."""
    name = properties.get("UserPoolName") or f"{resolver.stack_name}-users"
    existing = [p for p in cognito.list_user_pools(MaxResults=60)["UserPools"] if p["Name"] == name]
    if existing:
        return str(existing[0]["Id"])
    # Conditionals rather than `or {}`: mypy types a `{}` as the request's TypedDict only in a conditional.
    policies, admin_create_user = properties.get("Policies"), properties.get("AdminCreateUserConfig")
    return str(
        cognito.create_user_pool(
            PoolName=name,
            UsernameAttributes=properties.get("UsernameAttributes") or [],
            AutoVerifiedAttributes=properties.get("AutoVerifiedAttributes") or [],
            Policies=policies if policies else {},
            AdminCreateUserConfig=admin_create_user if admin_create_user else {},
        )["UserPool"]["Id"]
    )


def _app_client(
    cognito: CognitoIdentityProviderClient, pool_id: str, properties: dict[str, Any], resolver: Resolver
) -> str:
    """The id of the template's app client in the pool, created unless a client of its name exists."""
    name = properties.get("ClientName") or f"{resolver.stack_name}-web"
    found = cognito.list_user_pool_clients(UserPoolId=pool_id, MaxResults=60)["UserPoolClients"]
    existing = [c for c in found if c["ClientName"] == name]
    if existing:
        return str(existing[0]["ClientId"])
    wanted = {k: v for k, v in properties.items() if k in _CLIENT_SETTINGS}
    return str(
        cognito.create_user_pool_client(UserPoolId=pool_id, ClientName=name, **wanted)["UserPoolClient"][
            "ClientId"
        ]
    )


def _versioned_keys(store: Any) -> tuple[Any, ...]:
    # moto's S3 key store pickles through items(), which yields only the latest version of each key.
    # Re-adding every version in order (its __setitem__ appends) keeps the non-current ones too.
    versions = [(key, version) for key in dict.keys(store) for version in store.getlist(key)]
    return (type(store), (), None, None, iter(versions))


def _dumps(value: Any) -> bytes:
    """pickle.dumps that keeps every version of every S3 object."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer)
    pickler.dispatch_table = {**copyreg.dispatch_table, _VersionedKeyStore: _versioned_keys}
    pickler.dump(value)
    return buffer.getvalue()


def _generate_password() -> str:
    # Cognito's default policy: upper, lower, digit, symbol, >= 8 characters.
    return f"Demo-{secrets.token_urlsafe(9)}1a"


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
