"""moto's server embedded on loopback, holding what the template declares, kept across restarts and crashes.

DynamoDB, S3 and Cognito are kept as AWS keeps them: every request that changes them is recorded in a
write-ahead journal (local/journal.py, local/changes.py) and fsynced before moto's answer leaves, so an
acknowledged write survives a killed stack or a machine that dies. A snapshot (pickled moto backends, so
S3 version ids and Cognito subs survive) compacts the journal every few seconds while it grows and at
shutdown; a start loads the snapshot and replays the journal after it. The pool's id is derived from its
name, so tokens and `config.json` stay valid even on a fresh state. SSM is seeded afresh on every start.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import pickle
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload
from urllib.parse import unquote

import boto3
from moto.backends import get_backend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from local import changes
from local.journal import Journal
from local.moto_state import PERSISTED_SERVICES, dump_service, load_service
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

SNAPSHOT_VERSION = 1
"""Snapshots hold {"version", "services": {service: pickle}, "journal": first generation still to replay};
the services and the generation are optional, so older snapshots (DynamoDB and S3 only) still load."""
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


class EmbeddedAws:
    """moto's server on a loopback port, plus the resources of the stack."""

    def __init__(self, state_dir: Path, port: int) -> None:
        self.state_dir = state_dir
        self.port = port
        self.server: ThreadedMotoServer | None = None
        self.snapshot_path = state_dir / "aws-state.pickle"
        self.users_path = state_dir / "cognito-users.json"
        self.journal = Journal(state_dir)
        self._snapshot_lock = threading.Lock()
        # Held by each request that changes kept state, from before moto runs it until its record is
        # written: records are in the order moto applied the changes, and a snapshot sees no write half-done.
        self._write_lock = threading.Lock()
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
        """Load saved state (the snapshot, then the journal after it), then serve."""
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        since = self._load_snapshot()
        self._replay_journal(since)
        self.journal.open(max([since, *self.journal.generations()]))
        self.server = _JournaledMotoServer(self._record_request, port=self.port)
        self.server.start()
        if self.port == 0:
            self.port = int(self.server._server.server_port)  # type: ignore[union-attr]

    def stop(self) -> None:
        """Stop serving, then save the state (nothing can change it any more: the snapshot is exact)."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        try:
            if not self.snapshot():
                raise StateError(
                    f"the final snapshot of the local AWS state failed; {self.snapshot_path} and the journal "
                    "beside it still hold every change"
                )
        finally:
            self.journal.close()

    # ------------------------------------------------------------------------------------ journal

    def _record_request(self, request: changes.Request, run: Callable[[], int]) -> None:
        """Run a request to moto; when it changes kept state, return only once the change is on disk."""
        capture = changes.capture(request)
        if capture is None:
            run()
            return
        with self._write_lock:
            capture.begin()
            status = run()
            position = self.journal.position
            for change in capture.changes(status):
                position = self.journal.append(changes.encode(change))
        self.journal.sync(position)

    def record_service(self, service: str) -> None:
        """Journal a whole service after this process changed it directly (not through moto's API)."""
        with self._write_lock:
            position = self.journal.append(
                changes.encode(changes.ServiceChange(service, dump_service(service)))
            )
        self.journal.sync(position)

    def _replay_journal(self, since: int) -> None:
        try:
            for payload in self.journal.replay(since):
                changes.decode(payload).apply()
        except Exception as exc:
            raise StateError(
                f"the journal of the local AWS state in {self.state_dir} cannot be replayed "
                f"({type(exc).__name__}: {exc}); it was written by another version. `make dev-reset` starts "
                "afresh (it deletes the local users, conversations and agent files)"
            ) from exc

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
        self._create_schedule_groups(resolver)

    def _create_schedule_groups(self, resolver: Resolver) -> None:
        """The template's EventBridge Scheduler groups (kept across restarts with their schedules)."""
        scheduler = boto3.client(
            "scheduler",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        existing = {group["Name"] for group in scheduler.list_schedule_groups().get("ScheduleGroups", [])}
        for logical_id in resolver.resources("AWS::Scheduler::ScheduleGroup"):
            name = resolver.physical_id(logical_id)
            if name not in existing:
                scheduler.create_schedule_group(Name=name)

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
            if stored.id != user.sub:
                stored.id = user.sub
                stored.update_attributes([{"Name": "sub", "Value": user.sub}])
                self.record_service("cognito-idp")
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
        """Save DynamoDB, S3, Cognito and Scheduler atomically and start the journal afresh; nothing when the
        journal is empty (the last snapshot is exact). False if it never got a consistent copy (the previous
        snapshot and the journal stay)."""
        with self._snapshot_lock:
            if self.journal.empty and self.snapshot_path.exists():
                return True
            with self._write_lock:
                services = _consistent_copy()
                if services is None:
                    logging.getLogger("local").warning("could not take a consistent snapshot; will retry")
                    return False
                # Changes from now on go to a new generation, which this snapshot says to replay.
                generation = self.journal.rotate()
            blob = pickle.dumps({"version": SNAPSHOT_VERSION, "services": services, "journal": generation})
            _write_atomically(self.snapshot_path, blob, mode=0o600)
            self.journal.remove_before(generation)
            return True

    def _load_snapshot(self) -> int:
        """Load the snapshot; the journal generation to replay from."""
        if not self.snapshot_path.exists():
            return 0
        try:
            data = pickle.loads(self.snapshot_path.read_bytes())  # our own file, mode 600
            if data.get("version") != SNAPSHOT_VERSION:
                raise ValueError(f"snapshot version {data.get('version')}")
            for service, blob in data["services"].items():
                if service in PERSISTED_SERVICES:
                    load_service(service, blob)
            return int(data.get("journal", 0))
        except Exception as exc:
            raise StateError(
                f"the saved local state in {self.snapshot_path} cannot be loaded ({type(exc).__name__}: "
                f"{exc}); it was written by another version. `make dev-reset` starts afresh (it deletes "
                "the local users, conversations and agent files)"
            ) from exc


def _consistent_copy() -> dict[str, bytes] | None:
    """Every kept service pickled; None when Cognito's sign-ins (which take no lock) kept changing it."""
    for attempt in range(20):
        if attempt:
            time.sleep(0.05)
        try:
            return {service: dump_service(service) for service in PERSISTED_SERVICES}
        except RuntimeError:  # "dictionary changed size during iteration"
            continue
    return None


class _JournaledMotoServer(ThreadedMotoServer):
    """moto's threaded server, answering one request at a time, each passed through `record` (which runs
    it and journals it).

    moto's backends are not thread-safe: a DynamoDB transaction that fails puts back copies of every table
    it touched, taken when it began, so a write another thread made meanwhile (a bridge deleting an
    answered Inbox item, another message's transaction) would silently disappear, and a read could see
    a write that is then taken back. DynamoDB has no such effect. So moto runs one request at a time (each
    takes milliseconds), and the answer is built while it still holds the turn: moto builds it from live
    backend objects. The journal's fsync happens after the turn is given up.
    """

    def __init__(self, record: Callable[[changes.Request, Callable[[], int]], None], port: int) -> None:
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)
        self._record = record
        self._turn = threading.Lock()

    def _server_entry(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)

        def journaled(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            request = _request(environ)
            answer: list[Iterable[bytes]] = []
            status: list[int] = []

            def respond(code: str, headers: Any, exc_info: Any = None) -> Any:
                status.append(int(code.split(" ", 1)[0]))
                return start_response(code, headers, exc_info)

            def run() -> int:
                with self._turn:
                    answer.append(list(app(environ, respond)))
                return status[-1] if status else 500

            self._record(request, run)
            return answer[0]

        self._server = make_server(
            self._ip_address, self._port, journaled, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


def _request(environ: dict[str, Any]) -> changes.Request:
    """What the journal needs of a WSGI request; the body is read here and put back for moto."""
    method = str(environ.get("REQUEST_METHOD", "GET"))
    body = b""
    if method not in ("GET", "HEAD", "OPTIONS"):
        length = environ.get("CONTENT_LENGTH")
        stream = environ["wsgi.input"]
        if length or environ.get("wsgi.input_terminated"):  # else nothing says where the body ends
            body = stream.read(int(length)) if length else stream.read()
            environ["wsgi.input"] = io.BytesIO(body)
    raw = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/"))
    headers = {k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k.startswith("HTTP_")}
    return changes.Request(
        method=method,
        path=unquote(raw.split("?", 1)[0]),
        query=str(environ.get("QUERY_STRING", "")),
        headers=headers,
        body=body,
    )


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
