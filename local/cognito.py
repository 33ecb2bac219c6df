"""Cognito's sign-in endpoint for the local stack, with the server side of SRP that moto does not verify.

moto 5.2.5 answers USER_SRP_AUTH with random numbers and accepts any PASSWORD_VERIFIER signature, so a
wrong password would sign in. This front speaks Cognito's JSON protocol (`POST /`, `X-Amz-Target:
AWSCognitoIdentityProviderService.<Op>`) for what the web chat uses: it runs real SRP against the
password moto stores (Cognito's variant: RFC 5054's 3072-bit group, "Caldera Derived Key"), then lets
moto mint the tokens. Refresh and global sign-out are forwarded to moto unchanged; RevokeToken, which
moto lacks, revokes in moto's backend. Sessions are single-use and expire after 3 minutes, like
Cognito's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import httpx
from moto.cognitoidp.models import (
    CognitoIdpBackend,
    CognitoIdpUser,
    CognitoIdpUserPool,
    CognitoIdpUserPoolClient,
    UserStatus,
    cognitoidp_backends,
)
from moto.cognitoidp.utils import check_secret_hash
from moto.core.exceptions import JsonRESTError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from local.resolve import ACCOUNT, REGION

logger = logging.getLogger("local.cognito")

AMZ_JSON = "application/x-amz-json-1.1"
TARGET_PREFIX = "AWSCognitoIdentityProviderService."
SESSION_SECONDS = 180.0
"""How long a challenge can be answered, unless the app client sets AuthSessionValidity (minutes)."""
MAX_SESSIONS = 10_000
MAX_BODY_BYTES = 64 * 1024
INCORRECT = "Incorrect username or password."

# RFC 5054's 3072-bit group, as amazon-cognito-identity-js and every AWS SDK use it.
N_HEX = (
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200C"
    "BBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF"
)
N = int(N_HEX, 16)
G = 2
_INFO = b"Caldera Derived Key"
_TIMESTAMP = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"([1-9]|[12][0-9]|3[01]) ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9] UTC [0-9]{4}"
)


# ---------------------------------------------------------------------------------------------- SRP


def pad_hex(value: int) -> str:
    """Hex of an integer as AWS's SRP hashes it: even length, with a leading 00 if the top bit is set."""
    text = f"{value:x}"
    if len(text) % 2:
        return "0" + text
    return "00" + text if text[0] in "89abcdef" else text


def _hash(data: bytes) -> int:
    return int.from_bytes(hashlib.sha256(data).digest(), "big")


def _padded(value: int) -> bytes:
    return bytes.fromhex(pad_hex(value))


K = _hash(_padded(N) + _padded(G))


def password_verifier(pool_name: str, user_id_for_srp: str, password: str, salt: int) -> int:
    """v = g^x mod N with x = H(pad(salt) || H(poolName + userIdForSrp + ":" + password))."""
    identity = hashlib.sha256(f"{pool_name}{user_id_for_srp}:{password}".encode()).digest()
    return pow(G, _hash(_padded(salt) + identity), N)


def server_public(verifier: int, b: int) -> int:
    """B = k·v + g^b mod N."""
    return (K * verifier + pow(G, b, N)) % N


def password_key(big_a: int, big_b: int, b: int, verifier: int) -> bytes:
    """The 16-byte key both sides derive: HKDF(S = (A·v^u)^b, salt u, "Caldera Derived Key")."""
    u = _hash(_padded(big_a) + _padded(big_b))
    if u == 0:
        raise ValueError("u is zero")
    shared = pow(big_a * pow(verifier, u, N) % N, b, N)
    prk = hmac.new(_padded(u), _padded(shared), hashlib.sha256).digest()
    return hmac.new(prk, _INFO + b"\x01", hashlib.sha256).digest()[:16]


def claim_signature(
    key: bytes, pool_name: str, user_id_for_srp: str, secret_block: bytes, timestamp: str
) -> bytes:
    """HMAC-SHA256(key, poolName || userIdForSrp || secretBlock || timestamp), what the client signs."""
    message = pool_name.encode() + user_id_for_srp.encode() + secret_block + timestamp.encode()
    return hmac.new(key, message, hashlib.sha256).digest()


def is_cognito_timestamp(text: str) -> bool:
    """Whether `text` is a date as Cognito wants it, e.g. "Sun Nov 2 09:05:01 UTC 2026" (day unpadded)."""
    if not _TIMESTAMP.fullmatch(text):
        return False
    try:
        datetime.strptime(text, "%a %b %d %H:%M:%S UTC %Y")
    except ValueError:
        return False
    return True


def _random_salt() -> int:
    # Bit 124 set: 32 hex digits without a leading zero nibble, so clients that hash the salt's hex as
    # sent (pycognito) and clients that hash it re-encoded from an integer (amazon-cognito-identity-js)
    # compute the same x.
    return secrets.randbits(128) | (1 << 124)


@dataclass(frozen=True)
class _Challenge:
    salt: int
    big_b: int
    key: bytes


def _challenge(pool_name: str, user_id: str, password: str, big_a: int) -> _Challenge:
    salt = _random_salt()
    verifier = password_verifier(pool_name, user_id, password, salt)
    while True:
        b = secrets.randbits(1024) % N
        big_b = server_public(verifier, b)
        if b and big_b:
            try:
                return _Challenge(salt, big_b, password_key(big_a, big_b, b, verifier))
            except ValueError:
                continue


# ---------------------------------------------------------------------------------------------- protocol


class CognitoError(Exception):
    """An error Cognito would answer with: `{"__type": code, "message": message}`."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _error(code: str, message: str, status: int = 400) -> Response:
    body = json.dumps({"__type": code, "message": message})
    return Response(body, status_code=status, media_type=AMZ_JSON, headers={"x-amzn-ErrorType": code})


def _answer(payload: dict[str, Any]) -> Response:
    return Response(json.dumps(payload), media_type=AMZ_JSON)


def _string(source: dict[str, Any], name: str) -> str:
    value = source.get(name)
    if not isinstance(value, str) or not value:
        raise CognitoError("InvalidParameterException", f"Missing required parameter {name}")
    return value


def _strings(source: dict[str, Any], name: str) -> dict[str, str]:
    value = source.get(name)
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise CognitoError("InvalidParameterException", f"{name} must be a map of strings")
    return value


@dataclass(frozen=True)
class _PasswordClaim:
    """What a PASSWORD_VERIFIER answer is checked against, keyed by its SECRET_BLOCK."""

    client_id: str
    username: str
    user_id_for_srp: str
    key: bytes
    expires: float


@dataclass(frozen=True)
class _NewPassword:
    """A NEW_PASSWORD_REQUIRED challenge, keyed by the Session we gave out; moto's own session inside."""

    client_id: str
    username: str
    moto_session: str
    expires: float


class _Sessions:
    """Single-use tokens that expire; the oldest are dropped past MAX_SESSIONS."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._items: dict[str, _PasswordClaim | _NewPassword] = {}

    def deadline(self, client: CognitoIdpUserPoolClient) -> float:
        minutes = client.extended_config.get("AuthSessionValidity")
        seconds = float(minutes) * 60 if isinstance(minutes, int) and 3 <= minutes <= 15 else SESSION_SECONDS
        return self._clock() + seconds

    def put(self, token: str, item: _PasswordClaim | _NewPassword) -> None:
        now = self._clock()
        for stale in [t for t, i in self._items.items() if i.expires <= now]:
            del self._items[stale]
        while len(self._items) >= MAX_SESSIONS:
            del self._items[next(iter(self._items))]
        self._items[token] = item

    def take(self, token: str) -> _PasswordClaim | _NewPassword | None:
        item = self._items.pop(token, None)
        return item if item is not None and item.expires > self._clock() else None


_Pending = TypeVar("_Pending", _PasswordClaim, _NewPassword)


def _user_status(user: CognitoIdpUser) -> str:
    return str(getattr(user.status, "value", user.status))


class CognitoFront:
    """The sign-in operations of Cognito's JSON API over moto's in-process backend."""

    def __init__(self, moto_url: str, clock: Callable[[], float]) -> None:
        self.moto_url = moto_url.rstrip("/") + "/"
        self.sessions = _Sessions(clock)
        self.operations: dict[str, Callable[[dict[str, Any]], Awaitable[Response]]] = {
            "InitiateAuth": self.initiate_auth,
            "RespondToAuthChallenge": self.respond_to_auth_challenge,
            "RevokeToken": self.revoke_token,
            "GlobalSignOut": self.global_sign_out,
        }

    async def handle(self, request: Request) -> Response:
        """One Cognito API call; every failure is a Cognito-shaped error, never a traceback."""
        target = request.headers.get("x-amz-target", "")
        operation = (
            self.operations.get(target.removeprefix(TARGET_PREFIX))
            if target.startswith(TARGET_PREFIX)
            else None
        )
        if operation is None:
            return _error(
                "UnsupportedOperationException", "The local Cognito serves sign-in operations only."
            )
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _error("SerializationException", "The request body is too large.")
        try:
            payload = json.loads(body)
        except ValueError:
            return _error("SerializationException", "The request body is not valid JSON.")
        if not isinstance(payload, dict):
            return _error("SerializationException", "The request body must be a JSON object.")
        try:
            return await operation(payload)
        except CognitoError as exc:
            return _error(exc.code, exc.message, exc.status)
        except JsonRESTError as exc:
            return _error(exc.error_type, exc.message)
        except Exception:
            logger.exception("local Cognito failed on %s", target)
            return _error("InternalErrorException", "An internal error occurred.", 500)

    # ------------------------------------------------------------------------------------ moto

    @property
    def backend(self) -> CognitoIdpBackend:
        """moto's Cognito backend for the local stack's account and region."""
        return cognitoidp_backends[ACCOUNT][REGION]

    def client(self, client_id: str) -> tuple[CognitoIdpUserPool, CognitoIdpUserPoolClient]:
        """The pool holding an app client, and the client."""
        for pool in self.backend.user_pools.values():
            client = pool.clients.get(client_id)
            if client is not None:
                return pool, client
        raise CognitoError("ResourceNotFoundException", f"User pool client {client_id} does not exist.")

    def find_user(self, pool: CognitoIdpUserPool, name: str) -> CognitoIdpUser | None:
        """A user by username or username attribute, ignoring case where the pool does."""
        user = pool._get_user(name)
        if user is not None:
            return user
        if (pool.extended_config.get("UsernameConfiguration") or {}).get("CaseSensitive", True):
            return None
        wanted = name.casefold()
        aliases = pool.extended_config.get("UsernameAttributes") or []
        for candidate in pool.users.values():
            names = [candidate.username, *(candidate.attribute_lookup.get(a) for a in aliases)]
            if any(isinstance(n, str) and n.casefold() == wanted for n in names):
                return candidate
        return None

    def login_name(self, pool: CognitoIdpUserPool, user: CognitoIdpUser) -> str:
        """The name moto mints tokens for: the email where it is the username (moto copies it into
        the `email` claim), else the username."""
        email = user.attribute_lookup.get("email")
        if "email" in (pool.extended_config.get("UsernameAttributes") or []) and isinstance(email, str):
            return email
        return user.username

    async def forward(self, operation: str, payload: dict[str, Any]) -> Response:
        """Ask moto's server, and pass its answer on (a failure of moto itself becomes Cognito's 500)."""
        headers = {"Content-Type": AMZ_JSON, "X-Amz-Target": TARGET_PREFIX + operation}
        try:
            async with httpx.AsyncClient(timeout=30) as http:
                reply = await http.post(self.moto_url, content=json.dumps(payload), headers=headers)
        except httpx.HTTPError as exc:
            logger.warning("local Cognito could not reach moto: %s", type(exc).__name__)
            raise CognitoError("InternalErrorException", "The local AWS is not reachable.", 500) from exc
        if reply.status_code >= 500:
            logger.warning("moto failed on %s with HTTP %s", operation, reply.status_code)
            raise CognitoError("InternalErrorException", "An internal error occurred.", 500)
        return Response(reply.content, status_code=reply.status_code, media_type=AMZ_JSON)

    # ------------------------------------------------------------------------------------ operations

    async def initiate_auth(self, payload: dict[str, Any]) -> Response:
        """USER_SRP_AUTH here; REFRESH_TOKEN_AUTH at moto."""
        client_id = _string(payload, "ClientId")
        flow = _string(payload, "AuthFlow")
        parameters = _strings(payload, "AuthParameters")
        if flow == "USER_SRP_AUTH":
            return await self.start_srp(client_id, parameters)
        if flow in ("REFRESH_TOKEN_AUTH", "REFRESH_TOKEN"):
            _string(parameters, "REFRESH_TOKEN")
            return await self.forward("InitiateAuth", payload)
        raise CognitoError(
            "InvalidParameterException", f"The local Cognito does not support the {flow} flow."
        )

    async def start_srp(self, client_id: str, parameters: dict[str, str]) -> Response:
        """The server's first SRP step: SALT, SRP_B and a SECRET_BLOCK naming the pending claim."""
        pool, client = self.client(client_id)
        flows = client.extended_config.get("ExplicitAuthFlows") or []
        if flows and "ALLOW_USER_SRP_AUTH" not in flows and "USER_SRP_AUTH" not in flows:
            raise CognitoError("InvalidParameterException", "USER_SRP_AUTH is not enabled for this client.")
        username = _string(parameters, "USERNAME")
        try:
            big_a = int(_string(parameters, "SRP_A"), 16)
        except ValueError:
            big_a = 0
        if big_a % N == 0:
            raise CognitoError("InvalidParameterException", "SRP_A is not a valid SRP value.")
        if client.generate_secret and not check_secret_hash(
            client.secret, client.id, username, parameters.get("SECRET_HASH")
        ):
            raise CognitoError(
                "NotAuthorizedException", f"Unable to verify secret hash for client {client_id}"
            )
        user = self._user_signing_in(pool, client, username)
        pool_name = pool.id.split("_", 1)[1]
        # Without a password nothing can sign in: a random one makes every signature wrong.
        password = user.password if user.password is not None else secrets.token_urlsafe(32)
        challenge = await run_in_threadpool(_challenge, pool_name, user.username, password, big_a)
        secret_block = base64.b64encode(secrets.token_bytes(48)).decode()
        self.sessions.put(
            secret_block,
            _PasswordClaim(
                client_id, user.username, user.username, challenge.key, self.sessions.deadline(client)
            ),
        )
        return _answer(
            {
                "ChallengeName": "PASSWORD_VERIFIER",
                "ChallengeParameters": {
                    "SALT": f"{challenge.salt:x}",
                    "SRP_B": f"{challenge.big_b:x}",
                    "SECRET_BLOCK": secret_block,
                    "USERNAME": user.username,
                    "USER_ID_FOR_SRP": user.username,
                },
            }
        )

    def _user_signing_in(
        self, pool: CognitoIdpUserPool, client: CognitoIdpUserPoolClient, username: str
    ) -> CognitoIdpUser:
        """The user named, if they may sign in; Cognito's error (unknown, disabled, unconfirmed…) if not."""
        user = self.find_user(pool, username)
        if user is None:
            if client.extended_config.get("PreventUserExistenceErrors") == "ENABLED":
                raise CognitoError("NotAuthorizedException", INCORRECT)
            raise CognitoError("UserNotFoundException", "User does not exist.")
        if not user.enabled:
            raise CognitoError("NotAuthorizedException", "User is disabled.")
        status = _user_status(user)
        if status == UserStatus.UNCONFIRMED.value:
            raise CognitoError("UserNotConfirmedException", "User is not confirmed.")
        if status == UserStatus.RESET_REQUIRED.value:
            raise CognitoError("PasswordResetRequiredException", "Password reset required for the user")
        return user

    async def respond_to_auth_challenge(self, payload: dict[str, Any]) -> Response:
        """PASSWORD_VERIFIER is checked here; NEW_PASSWORD_REQUIRED goes on to moto."""
        client_id = _string(payload, "ClientId")
        name = _string(payload, "ChallengeName")
        responses = _strings(payload, "ChallengeResponses")
        if name == "PASSWORD_VERIFIER":
            return self.verify_password_claim(client_id, responses)
        if name == "NEW_PASSWORD_REQUIRED":
            return await self.set_new_password(client_id, _string(payload, "Session"), responses)
        raise CognitoError(
            "InvalidParameterException", f"The local Cognito does not support the {name} challenge."
        )

    def session_user(
        self, token: str, kind: type[_Pending], client_id: str, responses: dict[str, str]
    ) -> tuple[_Pending, CognitoIdpUserPool, CognitoIdpUserPoolClient, CognitoIdpUser]:
        """Use up a single-use session: what it was issued for, for this client and the user it names only."""
        pending = self.sessions.take(token)
        if not isinstance(pending, kind) or pending.client_id != client_id:
            raise CognitoError("NotAuthorizedException", "Invalid session for the user, session is expired.")
        pool, client = self.client(client_id)
        user = self.find_user(pool, _string(responses, "USERNAME"))
        if user is None or user.username != pending.username:
            raise CognitoError("NotAuthorizedException", INCORRECT)
        return pending, pool, client, user

    def verify_password_claim(self, client_id: str, responses: dict[str, str]) -> Response:
        """Check the proof of the password in constant time; tokens (or the next challenge) if right."""
        pending, pool, client, user = self.session_user(
            _string(responses, "PASSWORD_CLAIM_SECRET_BLOCK"), _PasswordClaim, client_id, responses
        )
        timestamp = _string(responses, "TIMESTAMP")
        if not is_cognito_timestamp(timestamp):
            raise CognitoError(
                "InvalidParameterException", "TIMESTAMP must look like 'Sun Nov 2 09:05:01 UTC 2026'."
            )
        try:
            claimed = base64.b64decode(_string(responses, "PASSWORD_CLAIM_SIGNATURE"), validate=True)
            secret_block = base64.b64decode(_string(responses, "PASSWORD_CLAIM_SECRET_BLOCK"), validate=True)
        except (binascii.Error, ValueError):
            claimed, secret_block = b"", b""
        expected = claim_signature(
            pending.key, pool.id.split("_", 1)[1], pending.user_id_for_srp, secret_block, timestamp
        )
        if not hmac.compare_digest(expected, claimed):
            raise CognitoError("NotAuthorizedException", INCORRECT)
        try:
            result = self.backend.admin_initiate_auth(
                pool.id,
                client_id,
                "ADMIN_USER_PASSWORD_AUTH",
                {"USERNAME": self.login_name(pool, user), "PASSWORD": user.password or ""},
            )
        except JsonRESTError as exc:
            # The password or the account changed since the challenge: moto's message names the user.
            if exc.error_type == "NotAuthorizedException" and user.enabled:
                raise CognitoError("NotAuthorizedException", INCORRECT) from exc
            raise
        if result.get("ChallengeName") != "NEW_PASSWORD_REQUIRED":
            return _answer(result)
        session = secrets.token_urlsafe(48)
        self.sessions.put(
            session, _NewPassword(client_id, user.username, result["Session"], self.sessions.deadline(client))
        )
        attributes = {k: v for k, v in user.attribute_lookup.items() if k != "sub"}
        return _answer(
            {
                "ChallengeName": "NEW_PASSWORD_REQUIRED",
                "Session": session,
                "ChallengeParameters": {
                    "USER_ID_FOR_SRP": user.username,
                    "requiredAttributes": "[]",
                    "userAttributes": json.dumps(attributes),
                },
            }
        )

    async def set_new_password(self, client_id: str, session: str, responses: dict[str, str]) -> Response:
        """The forced password change, for the user the session was issued to only."""
        pending, pool, _, user = self.session_user(session, _NewPassword, client_id, responses)
        new_password = _string(responses, "NEW_PASSWORD")
        return await self.forward(
            "RespondToAuthChallenge",
            {
                "ClientId": client_id,
                "ChallengeName": "NEW_PASSWORD_REQUIRED",
                "Session": pending.moto_session,
                "ChallengeResponses": {"USERNAME": self.login_name(pool, user), "NEW_PASSWORD": new_password},
            },
        )

    async def revoke_token(self, payload: dict[str, Any]) -> Response:
        """Revoke a refresh token and the tokens issued with it (moto has no RevokeToken)."""
        token = _string(payload, "Token")
        client_id = _string(payload, "ClientId")
        pool, client = self.client(client_id)
        if not client.extended_config.get("EnableTokenRevocation", True):
            raise CognitoError(
                "UnsupportedOperationException", "Token revocation is not enabled for this client."
            )
        issued = pool.refresh_tokens.get(token)
        if issued is not None and issued[0] == client_id:
            pool.refresh_tokens[token] = None
            origin = issued[2]
            for table in (pool.access_tokens, pool.id_tokens):
                for jwt in [t for t in table if _claims(t).get("origin_jti") == origin]:
                    table.pop(jwt, None)
        return _answer({})

    async def global_sign_out(self, payload: dict[str, Any]) -> Response:
        """Sign the user out everywhere, at moto."""
        _string(payload, "AccessToken")
        return await self.forward("GlobalSignOut", payload)


def _claims(token: str) -> dict[str, Any]:
    """The unverified payload of a JWT moto issued (only to match tokens with each other)."""
    try:
        part = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def cognito_app(moto_url: str, *, clock: Callable[[], float] = time.monotonic) -> Starlette:
    """Cognito's sign-in API (`POST /`) over the moto at `moto_url`; mount it where config.json points."""
    front = CognitoFront(moto_url, clock)
    return Starlette(routes=[Route("/", front.handle, methods=["POST"])])
