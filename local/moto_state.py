"""moto's in-memory state as bytes and back: what the local AWS's snapshots and journal records are made of.

Pickles of moto's own objects, so everything moto keeps comes back exactly (S3 version ids, which the
bridge's manifest pins; Cognito subs, which every table is keyed by). Two adjustments: every version of
an S3 object is kept (moto's key store pickles only the latest), and Cognito's tokens and sign-in
sessions are left out, so a restart signs browsers out as it always has (the ID tokens they hold still
verify: moto signs them with a fixed key) and a revoked token can never come back.
"""

from __future__ import annotations

import copyreg
import io
import pickle
from typing import Any

from joserfc import jwk
from moto.backends import get_backend
from moto.cognitoidp.models import CognitoIdpBackend, CognitoIdpUserPool
from moto.s3.models import s3_backends
from moto.s3.utils import _VersionedKeyStore
from moto.utilities.utils import load_resource

PERSISTED_SERVICES = ("dynamodb", "s3", "cognito-idp", "scheduler")
_TOKENS = {
    CognitoIdpUserPool: ("refresh_tokens", "access_tokens", "id_tokens"),
    CognitoIdpBackend: ("sessions",),
}


def _versioned_keys(store: Any) -> tuple[Any, ...]:
    # Re-adding every version in order (the store's __setitem__ appends) keeps the non-current ones too.
    versions = [(key, version) for key in dict.keys(store) for version in store.getlist(key)]
    return (type(store), (), None, None, iter(versions))


def _without_tokens(value: Any) -> tuple[Any, ...]:
    state = dict(value.__dict__)
    for name in _TOKENS[type(value)]:
        state[name] = {}
    # moto's fixed signing key, which does not pickle: read again from moto's resources on load.
    state.pop("json_web_key", None)
    return (_restore, (type(value), state))


def _restore(kind: type[Any], state: dict[str, Any]) -> Any:
    value = object.__new__(kind)
    value.__dict__.update(state)
    if kind is CognitoIdpUserPool:
        value.json_web_key = jwk.RSAKey.import_key(load_resource("cognitoidp/resources/jwks-private.json"))
    return value


def dumps(value: Any) -> bytes:
    """pickle.dumps of moto's objects, keeping every version of every S3 object and no Cognito token."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer)
    pickler.dispatch_table = {
        **copyreg.dispatch_table,
        _VersionedKeyStore: _versioned_keys,
        **dict.fromkeys(_TOKENS, _without_tokens),
    }
    pickler.dump(value)
    return buffer.getvalue()


def dump_service(service: str) -> bytes:
    """One persisted service's whole state (every account and region)."""
    return dumps(get_backend(service))  # type: ignore[call-overload]


def load_service(service: str, blob: bytes) -> None:
    """Replace one service's whole state with what `dump_service` wrote (our own file, mode 600)."""
    loaded = pickle.loads(blob)
    backend = get_backend(service)  # type: ignore[call-overload]
    backend.clear()
    backend.update(loaded)
    if service == "s3":
        # A bucket registers its name in this index when created, not when unpickled; without it,
        # create_bucket would replace the restored bucket with an empty one.
        s3_backends.bucket_accounts.clear()
        for account_id, partitions in backend.items():
            for partition, s3 in partitions.items():
                for name in s3.buckets:
                    s3_backends.bucket_accounts[name] = (partition, account_id)
