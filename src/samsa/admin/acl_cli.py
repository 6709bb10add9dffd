"""`samsa acl`: add, list and remove ACLs, as Kafka's kafka-acls.sh does.

    samsa acl --bootstrap HOST:PORT add --allow-principal User:alice --operation Read --topic orders
    samsa acl --bootstrap HOST:PORT list [--topic orders] [--principal User:alice]
    samsa acl --bootstrap HOST:PORT remove --allow-principal User:alice --topic orders
    samsa acl --data-dir DIR add|list|remove ...      (a stopped broker's data dir)

Through a running broker (CreateAcls, DescribeAcls, DeleteAcls, as kafka-acls.sh with
--bootstrap-server): the client needs Alter (add, remove) or Describe (list) on the cluster,
and the broker an authorizer (`authorizer.class.name`). With --data-dir the ACL file of a
stopped broker is edited directly (its lock is taken; refused while a broker runs).

Resources: --topic, --group, --transactional-id (each repeatable) and --cluster, with
--resource-pattern-type literal (default), prefixed, or for list and remove match or any.
Principals: --allow-principal / --deny-principal (repeatable), each with --host (default *).
--operation is repeatable (default All); names as Kafka's (Read, Write, Create, Delete,
Alter, Describe, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, All).
Without a resource, list and remove take every resource; without a principal, every one.

Exit status: 0 done, 1 the broker or data dir refused, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from kio.schema.create_acls.v3.request import CreateAclsRequest
from kio.schema.delete_acls.v3.request import DeleteAclsFilter, DeleteAclsRequest
from kio.schema.describe_acls.v3.request import DescribeAclsRequest
from kio.schema.errors import ErrorCode

from samsa.admin.client import AdminClient, AdminError
from samsa.log.storage import DataDirLocked, OsStorage
from samsa.security import acl_wire
from samsa.security.acl import (
    CLUSTER_NAME,
    AclBinding,
    AclFilter,
    AclOperation,
    PatternType,
    Permission,
    ResourceType,
    invalid_binding,
    operation_named,
)
from samsa.security.acl_store import AclStore, AclStoreError
from samsa.usage import ArgumentParser, UsageError

PATTERNS = {"literal": PatternType.LITERAL, "prefixed": PatternType.PREFIXED}
FILTER_PATTERNS = {**PATTERNS, "match": PatternType.MATCH, "any": PatternType.ANY}


class Refused(Exception):
    """The broker or the data dir refused: one line on stderr, exit status 1."""


def register(subparsers: Any) -> None:
    """Add the `acl` subcommand to the `samsa` parser."""
    parser = subparsers.add_parser(
        "acl",
        help="add, list and remove ACLs (kafka-acls.sh)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--bootstrap", metavar="HOST:PORT", help="a running broker")
    where.add_argument("--data-dir", help="a stopped broker's data dir")
    actions = parser.add_subparsers(dest="acl_command", required=True, parser_class=ArgumentParser)
    for name, help_text in (
        ("add", "add ACLs: each principal x host x operation x resource"),
        ("list", "list the ACLs matching the options"),
        ("remove", "remove the ACLs matching the options"),
    ):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("--allow-principal", action="append", default=[])
        action.add_argument("--deny-principal", action="append", default=[])
        action.add_argument("--principal", action="append", default=[], help="(list) filter")
        action.add_argument("--host", default=None, help="default * (add); any (list, remove)")
        action.add_argument("--operation", action="append", default=[])
        action.add_argument("--topic", action="append", default=[])
        action.add_argument("--group", action="append", default=[])
        action.add_argument("--transactional-id", action="append", default=[])
        action.add_argument("--cluster", action="store_true")
        action.add_argument("--resource-pattern-type", default=None)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    command = f"samsa acl {args.acl_command}"
    try:
        store = _backend(args)
        if args.acl_command == "add":
            bindings = _bindings(args)
            store.add(bindings)
            _print(out, bindings)
        elif args.acl_command == "list":
            _print(out, store.describe(_filters(args)))
        else:
            _print(out, store.remove(_filters(args)), "Removed")
    except UsageError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 2
    except (Refused, AdminError, AclStoreError, DataDirLocked, OSError) as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------- options to ACLs
def _resources(args: argparse.Namespace) -> list[tuple[ResourceType, str]]:
    return (
        [(ResourceType.TOPIC, name) for name in args.topic]
        + [(ResourceType.GROUP, name) for name in args.group]
        + [(ResourceType.TRANSACTIONAL_ID, name) for name in args.transactional_id]
        + ([(ResourceType.CLUSTER, CLUSTER_NAME)] if args.cluster else [])
    )


def _operations(args: argparse.Namespace, default: AclOperation) -> list[AclOperation]:
    found = []
    for name in args.operation or [default.name]:
        op = operation_named(name)
        if op is None:
            raise UsageError(f"unknown --operation {name!r}")
        found.append(op)
    return found


def _pattern(args: argparse.Namespace, choices: dict[str, PatternType]) -> PatternType:
    name = (args.resource_pattern_type or "literal").lower()
    if name not in choices:
        raise UsageError(f"--resource-pattern-type must be one of {', '.join(choices)}")
    return choices[name]


def _principals(args: argparse.Namespace) -> list[tuple[str, Permission]]:
    return [(p, Permission.ALLOW) for p in args.allow_principal] + [
        (p, Permission.DENY) for p in args.deny_principal
    ]


def _bindings(args: argparse.Namespace) -> list[AclBinding]:
    resources, principals = _resources(args), _principals(args)
    if not resources:
        raise UsageError("add needs a resource: --topic, --group, --transactional-id or --cluster")
    if not principals:
        raise UsageError("add needs --allow-principal or --deny-principal")
    pattern = _pattern(args, PATTERNS)
    bindings = [
        AclBinding(kind, name, pattern, principal, args.host or "*", op, permission)
        for (kind, name), (principal, permission), op in itertools.product(
            resources, principals, _operations(args, AclOperation.ALL)
        )
    ]
    for binding in bindings:
        problem = invalid_binding(binding)
        if problem:
            raise UsageError(problem)
    return bindings


def _filters(args: argparse.Namespace) -> list[AclFilter]:
    resources: list[tuple[ResourceType, str | None]] = [*_resources(args)] or [
        (ResourceType.ANY, None)
    ]
    default = "literal" if _resources(args) else "any"
    pattern = _pattern(
        argparse.Namespace(resource_pattern_type=args.resource_pattern_type or default),
        FILTER_PATTERNS,
    )
    entries: list[tuple[str | None, Permission]] = [
        *_principals(args),
        *((p, Permission.ANY) for p in args.principal),
    ] or [(None, Permission.ANY)]
    ops = _operations(args, AclOperation.ANY) if args.operation else [AclOperation.ANY]
    return [
        AclFilter(kind, name, pattern, principal, args.host, op, permission)
        for (kind, name), (principal, permission), op in itertools.product(resources, entries, ops)
    ]


def _print(out: TextIO, bindings: Iterable[AclBinding], verb: str = "Current") -> None:
    """As kafka-acls.sh prints them: per resource pattern, its ACLs."""

    def pattern(acl: AclBinding) -> tuple[ResourceType, str, PatternType]:
        return acl.resource_type, acl.resource_name, acl.pattern_type

    for (kind, name, pattern_type), acls in itertools.groupby(sorted(set(bindings)), key=pattern):
        print(
            f"{verb} ACLs for resource `ResourcePattern(resourceType={kind.name}, name={name}, "
            f"patternType={pattern_type.name})`:",
            file=out,
        )
        for acl in acls:
            print(
                f" \t(principal={acl.principal}, host={acl.host}, "
                f"operation={acl.operation.name}, permissionType={acl.permission.name})",
                file=out,
            )
        print(file=out)


# --------------------------------------------------------------------- where the ACLs are
class _Local:
    """A stopped broker's data dir: its ACL file, under the data dir's lock."""

    def __init__(self, data_dir: str) -> None:
        if not os.path.isdir(data_dir):
            raise UsageError(f"no data dir {data_dir}")
        self.storage = OsStorage()
        self.data_dir = data_dir

    def _store(self) -> AclStore:
        store = AclStore(self.storage, self.data_dir)
        store.load()
        return store

    def add(self, bindings: list[AclBinding]) -> None:
        lock = self.storage.lock(self.data_dir)
        try:
            self._store().add(bindings)
        finally:
            lock.release()

    def describe(self, filters: list[AclFilter]) -> list[AclBinding]:
        return [acl for acl in self._store().bindings() if any(f.matches(acl) for f in filters)]

    def remove(self, filters: list[AclFilter]) -> list[AclBinding]:
        lock = self.storage.lock(self.data_dir)
        try:
            return [acl for acls in self._store().remove(filters) for acl in acls]
        finally:
            lock.release()


class _Remote:
    """A running broker, through CreateAcls, DescribeAcls and DeleteAcls."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def add(self, bindings: list[AclBinding]) -> None:
        creations = tuple(acl_wire.creation(acl) for acl in bindings)
        with AdminClient(self.bootstrap) as client:
            response = client.send(CreateAclsRequest(creations=creations))
        for result in response.results:
            _check(result.error_code, result.error_message)

    def describe(self, filters: list[AclFilter]) -> list[AclBinding]:
        found: list[AclBinding] = []
        with AdminClient(self.bootstrap) as client:
            for f in filters:
                response = client.send(DescribeAclsRequest(**acl_wire.filter_fields(f)))
                _check(response.error_code, response.error_message)
                found += acl_wire.described(response.resources)
        return found

    def remove(self, filters: list[AclFilter]) -> list[AclBinding]:
        gone = self.describe(filters)
        request = DeleteAclsRequest(
            filters=tuple(DeleteAclsFilter(**acl_wire.filter_fields(f)) for f in filters)
        )
        with AdminClient(self.bootstrap) as client:
            response = client.send(request)
        for result in response.filter_results:
            _check(result.error_code, result.error_message)
        return gone


def _check(code: int, message: str | None) -> None:
    if code != ErrorCode.none:
        name = ErrorCode(code).name.upper()
        raise Refused(f"{name}" + (f": {message}" if message else ""))


def _backend(args: argparse.Namespace) -> _Local | _Remote:
    if args.data_dir is not None:
        return _Local(args.data_dir)
    return _Remote(args.bootstrap or "127.0.0.1:9092")
