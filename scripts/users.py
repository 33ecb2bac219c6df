"""Manage the people who may sign in to a stack's web chat (its Cognito user pool).

    python scripts/users.py --stack my-openclaw add me@example.com        # temporary password, shown once
    python scripts/users.py --stack my-openclaw list
    python scripts/users.py --stack my-openclaw reset-password me@example.com
    python scripts/users.py --stack my-openclaw remove me@example.com [--yes]
    python scripts/users.py --endpoints .local/endpoints.json list        # the local stack instead

The pool is the stack's `UserPoolId` output (or endpoints.json's `userPoolId`). A new or reset password is
generated here to the pool's own password policy, printed once on stdout and nowhere else (no log, no
argument list, no email: Cognito's invitation is suppressed); it must be changed at the first sign-in.
Removing a user deletes the login only: their conversations and the agent's files stay in the tables and
the data bucket. Exit codes: 0 done, 1 AWS failed, 2 usage or configuration error (user exists, no such
user, no such pool).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import string
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

# Runnable as `python scripts/users.py` from anywhere: the shared package lives in the Lambda layer's
# directory, not in site-packages, and scripts/ beside this file.
_REPO = Path(__file__).resolve().parent.parent
for _path in (str(_REPO / "layers" / "shared"), str(_REPO)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from scripts import stacks  # noqa: E402
from scripts.aws_errors import UsageError, aws_errors, exit_code  # noqa: E402

if TYPE_CHECKING:
    from mypy_boto3_cognito_idp import CognitoIdentityProviderClient
    from mypy_boto3_cognito_idp.type_defs import UserTypeTypeDef

POOL_OUTPUT = "UserPoolId"
WEB_OUTPUT = "WebUrl"
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
"""The template's AlarmEmail rule: enough to catch a typo, Cognito checks the rest."""

SYMBOLS = "!#%*+-=?@^_"
"""Symbols Cognito counts as such that need no quoting in a shell or a password manager's form."""
PASSWORD_LENGTH = 20
"""Longer than the template's minimum (12); a pool asking for more gets more."""

# --------------------------------------------------------------------------------------------------------
# Passwords
# --------------------------------------------------------------------------------------------------------


def temporary_password(minimum_length: int) -> str:
    """A random password of every class Cognito can require (upper, lower, digit, symbol), long enough."""
    classes = [string.ascii_uppercase, string.ascii_lowercase, string.digits, SYMBOLS]
    alphabet = "".join(classes)
    # One of each class whatever the pool demands: no policy Cognito offers can refuse it.
    chars = [secrets.choice(members) for members in classes]
    chars += [secrets.choice(alphabet) for _ in range(max(PASSWORD_LENGTH, minimum_length) - len(chars))]
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


def pool_missing(pool_id: str) -> UsageError:
    """The error for a pool that is not there (a deleted stack, or the wrong region)."""
    return UsageError(
        f"user pool {pool_id} does not exist: deploy the stack first (make deploy), "
        "or check --stack and --region"
    )


def minimum_length(cognito: CognitoIdentityProviderClient, pool_id: str) -> int:
    """The shortest password the pool accepts; UsageError naming the pool when it does not exist."""
    with aws_errors():
        try:
            pool = cognito.describe_user_pool(UserPoolId=pool_id)["UserPool"]
        except cognito.exceptions.ResourceNotFoundException:
            raise pool_missing(pool_id) from None
    return int(pool.get("Policies", {}).get("PasswordPolicy", {}).get("MinimumLength", 8))


# --------------------------------------------------------------------------------------------------------
# Users
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    """One account as `list` shows it."""

    email: str
    status: str
    enabled: bool
    created: str


def check_email(email: str) -> str:
    """The address, trimmed and in lower case; UsageError when it cannot be one."""
    # The pool ignores case in sign-in names; one spelling stored keeps `list` and the e-mails tidy.
    email = email.strip().lower()
    if not EMAIL_PATTERN.fullmatch(email):
        raise UsageError(f"that is not an e-mail address: {ascii(email[:254])}")
    return email


def user_exists(cognito: CognitoIdentityProviderClient, pool_id: str, email: str) -> bool:
    """Whether the pool has an account for this address."""
    with aws_errors():
        try:
            cognito.admin_get_user(UserPoolId=pool_id, Username=email)
        except cognito.exceptions.UserNotFoundException:
            return False
        except cognito.exceptions.ResourceNotFoundException:
            raise pool_missing(pool_id) from None
    return True


def create_user(cognito: CognitoIdentityProviderClient, pool_id: str, email: str) -> str:
    """Create the account with a fresh temporary password (returned); UsageError when it already exists."""
    password = temporary_password(minimum_length(cognito, pool_id))
    with aws_errors(password):
        try:
            cognito.admin_create_user(
                UserPoolId=pool_id,
                Username=email,
                UserAttributes=[
                    {"Name": "email", "Value": email},
                    # The admin vouches for the address; recovery mails go to it from the first day.
                    {"Name": "email_verified", "Value": "true"},
                ],
                TemporaryPassword=password,
                # No invitation mail: the password exists only on the admin's terminal.
                MessageAction="SUPPRESS",
            )
        except cognito.exceptions.UsernameExistsException:
            raise UsageError(
                f"{email} already has an account (use reset-password to give it a new one)"
            ) from None
    return password


def ensure_owner(cognito_client: CognitoIdentityProviderClient, user_pool_id: str, email: str) -> str | None:
    """Create the owner's account when missing: its temporary password to show once, None if it exists."""
    email = check_email(email)
    if user_exists(cognito_client, user_pool_id, email):
        return None
    try:
        return create_user(cognito_client, user_pool_id, email)
    except UsageError:
        if user_exists(cognito_client, user_pool_id, email):  # created meanwhile, e.g. by a second deploy
            return None
        raise


def reset_password(cognito: CognitoIdentityProviderClient, pool_id: str, email: str) -> str:
    """Give the account a new temporary password (returned) and sign it out everywhere."""
    password = temporary_password(minimum_length(cognito, pool_id))
    with aws_errors(password):
        try:
            cognito.admin_set_user_password(
                UserPoolId=pool_id, Username=email, Password=password, Permanent=False
            )
            # Whoever knew the old password may hold refresh tokens; they stop working now.
            cognito.admin_user_global_sign_out(UserPoolId=pool_id, Username=email)
        except cognito.exceptions.UserNotFoundException:
            raise UsageError(f"no account for {email} (list shows who has one)") from None
        except cognito.exceptions.ResourceNotFoundException:
            raise pool_missing(pool_id) from None
    return password


def remove_user(cognito: CognitoIdentityProviderClient, pool_id: str, email: str) -> None:
    """Delete the account (its conversations and files stay); UsageError when there is none."""
    with aws_errors():
        try:
            cognito.admin_delete_user(UserPoolId=pool_id, Username=email)
        except cognito.exceptions.UserNotFoundException:
            raise UsageError(f"no account for {email} (list shows who has one)") from None
        except cognito.exceptions.ResourceNotFoundException:
            raise pool_missing(pool_id) from None


def list_users(cognito: CognitoIdentityProviderClient, pool_id: str) -> list[User]:
    """Every account of the pool, by e-mail address."""
    minimum_length(cognito, pool_id)  # a missing pool is a clear usage error, not an empty list
    found: list[User] = []
    with aws_errors():
        for page in cognito.get_paginator("list_users").paginate(UserPoolId=pool_id):
            found.extend(_user(item) for item in page.get("Users") or [])
    return sorted(found, key=lambda user: user.email.lower())


def _user(item: UserTypeTypeDef) -> User:
    """A ListUsers entry as shown."""
    attributes = {str(a["Name"]): str(a.get("Value", "")) for a in item.get("Attributes") or []}
    created = item.get("UserCreateDate")
    return User(
        email=attributes.get("email") or str(item.get("Username", "")),
        status=str(item.get("UserStatus", "UNKNOWN")),
        enabled=bool(item.get("Enabled", True)),
        created=created.strftime("%Y-%m-%d") if created else "",
    )


# --------------------------------------------------------------------------------------------------------
# Where the pool is
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pool:
    """The user pool of one stack, and where its web chat is served (to tell a new user)."""

    cognito: CognitoIdentityProviderClient
    pool_id: str
    web_url: str | None


def deployed_pool(stack: str, region: str | None) -> Pool:
    """The pool named by a deployed stack's UserPoolId output."""
    stacks.check_stack_name(stack)
    session = stacks.deployed_session(region)
    with aws_errors():
        cloudformation = session.client("cloudformation")
        cognito = session.client("cognito-idp")
    outputs = stacks.stack_outputs(cloudformation, stack)
    pool_id = outputs.get(POOL_OUTPUT)
    if not pool_id:
        raise UsageError(f"stack {stack} has no {POOL_OUTPUT} output: deploy the current template.yaml first")
    return Pool(cognito=cognito, pool_id=pool_id, web_url=outputs.get(WEB_OUTPUT))


def local_pool(path: Path, region: str | None, env: Mapping[str, str]) -> Pool:
    """The local stack's pool, on its moto server."""
    endpoints = stacks.local_endpoints(path, "userPoolId")
    session = stacks.local_session(endpoints, region, env)
    try:
        with aws_errors():
            cognito = session.client("cognito-idp", endpoint_url=str(endpoints["awsEndpoint"]))
    except ValueError:  # botocore's "Invalid endpoint"
        raise UsageError(f"{path}: awsEndpoint is not a URL") from None
    web_url = endpoints.get("webUrl")
    return Pool(
        cognito=cognito, pool_id=str(endpoints["userPoolId"]), web_url=str(web_url) if web_url else None
    )


# --------------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------------


def show_password(email: str, password: str, web_url: str | None, out: TextIO) -> None:
    """Print the temporary password once, with what to do with it."""
    where = f" at {web_url}" if web_url else ""
    print(f"  sign in{where} as {email}", file=out)
    print(f"  temporary password: {password}", file=out)
    print("  (shown only now; it must be changed at the first sign-in and expires in 7 days)", file=out)


def confirm_removal(email: str, *, yes: bool, interactive: bool, ask: Callable[[str], str] = input) -> None:
    """UsageError unless --yes was given or the person at the terminal typed the address again."""
    if yes:
        return
    if not interactive:
        raise UsageError(f"not removing {email} without --yes (no terminal to ask)")
    typed = ask(f"Type {email} to remove its account (its conversations and files stay): ").strip()
    if typed.lower() != email.lower():
        raise UsageError("not removed: the address typed did not match")


def run(args: argparse.Namespace, env: Mapping[str, str], out: TextIO, *, interactive: bool) -> None:
    """Carry out the one command the arguments ask for."""
    pool = (
        local_pool(args.endpoints, args.region, env)
        if args.endpoints
        else deployed_pool(args.stack, args.region)
    )
    if args.command == "list":
        users = list_users(pool.cognito, pool.pool_id)
        print(f"{len(users)} user(s) in {pool.pool_id}", file=out)
        for user in users:
            state = "" if user.enabled else "  (disabled)"
            print(f"  {user.email:<40} {user.status:<22} created {user.created}{state}", file=out)
        return
    email = check_email(args.email)
    if args.command == "add":
        password = create_user(pool.cognito, pool.pool_id, email)
        print(f"created {email} in {pool.pool_id}", file=out)
        show_password(email, password, pool.web_url, out)
    elif args.command == "reset-password":
        password = reset_password(pool.cognito, pool.pool_id, email)
        print(f"new temporary password for {email}; every session of it is signed out", file=out)
        show_password(email, password, pool.web_url, out)
    else:
        confirm_removal(email, yes=args.yes, interactive=interactive)
        remove_user(pool.cognito, pool.pool_id, email)
        print(f"removed {email}; their conversations and the agent's files are kept", file=out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (there is deliberately no option for a password)."""
    parser = argparse.ArgumentParser(
        prog="users.py",
        description="Add, list, remove users of a stack's web chat, or give one a new temporary password.",
        epilog="Passwords are generated here and shown once. Exit codes: 0 done, 1 AWS failed, 2 usage.",
    )
    stacks.add_stack_arguments(parser, local=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = commands.add_parser("add", help="create a user with a temporary password shown once")
    add.add_argument("email")
    commands.add_parser("list", help="list every user and their status")
    remove = commands.add_parser("remove", help="delete a user's login (their data stays)")
    remove.add_argument("email")
    remove.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    reset = commands.add_parser("reset-password", help="new temporary password, shown once; signs out")
    reset.add_argument("email")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the script; the process exit code."""
    args = parse_args(argv)
    return exit_code(
        lambda: run(args, os.environ, sys.stdout, interactive=sys.stdin is not None and sys.stdin.isatty())
    )


if __name__ == "__main__":
    raise SystemExit(main())
