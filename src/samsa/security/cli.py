"""`samsa users add|list|delete` and `samsa certs create`.

`samsa users` changes the SCRAM credentials in a data dir whose broker is stopped (it takes the
data dir's lock, as the broker does). While the broker runs, use Kafka's API instead: an admin
client's `alter_user_scram_credentials`, or `kafka-configs.sh --bootstrap-server ... --alter
--add-config 'SCRAM-SHA-256=[password=...]' --entity-type users --entity-name alice`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from samsa.log.storage import DataDirLocked, OsStorage
from samsa.security import certs
from samsa.security.credentials import (
    DEFAULT_ITERATIONS,
    ITERATIONS_MAX,
    ITERATIONS_MIN,
    SCRAM_MECHANISMS,
    CredentialsError,
    CredentialStore,
    from_password,
)
from samsa.usage import ArgumentParser, UsageError


def register(subparsers: Any) -> None:
    users = subparsers.add_parser(
        "users", help="SCRAM users of a stopped broker's data dir", description=__doc__
    )
    actions = users.add_subparsers(dest="users_command", required=True, parser_class=ArgumentParser)
    add = actions.add_parser("add", help="add a user, or change its password")
    add.add_argument("name")
    add.add_argument("--data-dir", required=True)
    add.add_argument("--password", help="the password; without it, read from stdin")
    add.add_argument(
        "--mechanism",
        action="append",
        choices=sorted(SCRAM_MECHANISMS),
        help="SCRAM-SHA-256 and/or SCRAM-SHA-512 (default: both)",
    )
    add.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS)
    listing = actions.add_parser("list", help="users and their mechanisms (never a secret)")
    listing.add_argument("--data-dir", required=True)
    delete = actions.add_parser("delete", help="remove a user's credentials")
    delete.add_argument("name")
    delete.add_argument("--data-dir", required=True)
    delete.add_argument("--mechanism", action="append", choices=sorted(SCRAM_MECHANISMS))

    certificates = subparsers.add_parser(
        "certs", help="throwaway TLS certificates for tests", description=certs.__doc__
    )
    cert_actions = certificates.add_subparsers(
        dest="certs_command", required=True, parser_class=ArgumentParser
    )
    create = cert_actions.add_parser("create", help="a CA, a server and client certificates")
    create.add_argument("directory")
    create.add_argument(
        "--client", action="append", help="a client certificate's name (repeatable)"
    )
    create.add_argument(
        "--host", action="append", help="a name or address of the server (default localhost)"
    )


def run(args: argparse.Namespace) -> int:
    if args.command == "certs":
        return _certs(args)
    command = f"samsa users {args.users_command}"
    try:
        if not os.path.isdir(args.data_dir):
            raise UsageError(f"no data dir at {args.data_dir}")
        storage = OsStorage()
        lock = storage.lock(args.data_dir)
        try:
            store = CredentialStore(storage, args.data_dir)
            store.load()
            return _users(args, store)
        finally:
            lock.release()
    except UsageError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 2
    except (DataDirLocked, CredentialsError, OSError) as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 1


def _users(args: argparse.Namespace, store: CredentialStore) -> int:
    if args.users_command == "list":
        for name, held in sorted(store.users.items()):
            described = ", ".join(f"{m} ({c.iterations} iterations)" for m, c in held.items())
            print(f"{name}: {described}")
        return 0
    if not args.name:
        raise UsageError("a user name must not be empty")
    mechanisms: list[str] = args.mechanism or sorted(SCRAM_MECHANISMS)
    if args.users_command == "delete":
        missing = [m for m in mechanisms if store.get(args.name, m) is None]
        if (args.mechanism and missing) or (not args.mechanism and args.name not in store.users):
            raise UsageError(f"user {args.name!r} has no {', '.join(missing)} credential")
        store.apply([], [(args.name, m) for m in mechanisms])
        return 0
    if not ITERATIONS_MIN <= args.iterations <= ITERATIONS_MAX:
        raise UsageError(f"--iterations must be {ITERATIONS_MIN} to {ITERATIONS_MAX}")
    password = args.password if args.password is not None else sys.stdin.readline().rstrip("\n")
    if not password:
        raise UsageError("the password must not be empty")
    store.apply(
        [(args.name, m, from_password(m, password, args.iterations)) for m in mechanisms], []
    )
    return 0


def _certs(args: argparse.Namespace) -> int:
    try:
        files = certs.create(
            args.directory,
            clients=args.client or ["client"],
            hosts=args.host or ["localhost", "127.0.0.1"],
        )
    except OSError as exc:
        print(f"samsa certs create: {exc}", file=sys.stderr)
        return 1
    print(f"CA: {files.ca}\nserver keystore (ssl.keystore.location): {files.server_keystore}")
    for client in args.client or ["client"]:
        print(f"client {client}: {files.client_cert(client)} {files.client_key(client)}")
    return 0
