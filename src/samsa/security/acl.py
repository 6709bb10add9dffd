"""ACLs and the authorizer, with Kafka's semantics (StandardAuthorizer / AclAuthorizer).

Theory of operation. An ACL binds a resource pattern (type, name, LITERAL or PREFIXED; the
LITERAL name `*` matches every name) to an entry (principal, host, operation, ALLOW or DENY).
A request is allowed for (principal, host, operation, resource) when:

1. the principal is a super user (`super.users`), else
2. no ACL that matches the request DENYs it, and one ALLOWs it, else
3. no ACL at all names the resource (any principal, any operation) and
   `allow.everyone.if.no.acl.found` is true.

An ACL matches the request when its principal is the request's or `User:*`, its host is the
client's address or `*`, and its operation is the one asked for or ALL. ALLOW ACLs also imply:
READ, WRITE, DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS. A DENY
implies nothing (denying READ does not deny DESCRIBE), as in Kafka's
`StandardAuthorizerData.findResult`.

Pure data: no I/O here; `samsa.security.acl_store` keeps the ACLs in the data dir.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeVar

WILDCARD = "*"
WILDCARD_PRINCIPAL = "User:*"
CLUSTER_NAME = "kafka-cluster"
ANONYMOUS = "User:ANONYMOUS"
E = TypeVar("E", bound=IntEnum)


class ResourceType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class AclOperation(IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class Permission(IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


Op = AclOperation
IMPLIES_DESCRIBE = frozenset({Op.DESCRIBE, Op.READ, Op.WRITE, Op.DELETE, Op.ALTER})
IMPLIES_DESCRIBE_CONFIGS = frozenset({Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS})

# Kafka's AclEntry.supportedOperations: what each resource type's ACLs can grant, and what an
# authorized-operations field reports on.
SUPPORTED_OPERATIONS: dict[ResourceType, tuple[AclOperation, ...]] = {
    ResourceType.TOPIC: (
        Op.READ,
        Op.WRITE,
        Op.CREATE,
        Op.DESCRIBE,
        Op.DELETE,
        Op.ALTER,
        Op.DESCRIBE_CONFIGS,
        Op.ALTER_CONFIGS,
    ),
    ResourceType.GROUP: (Op.READ, Op.DESCRIBE, Op.DELETE),
    ResourceType.CLUSTER: (
        Op.CREATE,
        Op.CLUSTER_ACTION,
        Op.DESCRIBE_CONFIGS,
        Op.ALTER_CONFIGS,
        Op.IDEMPOTENT_WRITE,
        Op.ALTER,
        Op.DESCRIBE,
    ),
    ResourceType.TRANSACTIONAL_ID: (Op.DESCRIBE, Op.WRITE),
    ResourceType.DELEGATION_TOKEN: (Op.DESCRIBE,),
    ResourceType.USER: (Op.CREATE_TOKENS, Op.DESCRIBE_TOKENS),
}


# Operations by the names kafka-acls.sh and the Java clients write (Read, IdempotentWrite,
# DESCRIBE_CONFIGS, describe-configs): case, `_` and `-` do not matter.
OPERATION_NAMES = {op.name.replace("_", "").lower(): op for op in AclOperation if op.value > 1}


def operation_named(name: str) -> AclOperation | None:
    return OPERATION_NAMES.get(name.replace("_", "").replace("-", "").lower())


def operations_field(operations: Iterable[AclOperation]) -> int:
    """Kafka's 32-bit authorized-operations field (Utils.to32BitField)."""
    return sum(1 << op for op in set(operations))


@dataclass(frozen=True, slots=True, order=True)
class AclBinding:
    """One ACL, as CreateAcls carries it and DescribeAcls returns it."""

    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType
    principal: str
    host: str
    operation: AclOperation
    permission: Permission

    def covers(self, resource_type: ResourceType, name: str) -> bool:
        """Whether this ACL's pattern names the resource (`name` of `resource_type`)."""
        if self.resource_type != resource_type:
            return False
        if self.pattern_type == PatternType.PREFIXED:
            return name.startswith(self.resource_name)
        return self.resource_name in (name, WILDCARD)

    def decides(self, principal: str, host: str, operation: AclOperation) -> Permission | None:
        """ALLOW or DENY if this ACL applies to the request, else None (`findResult`)."""
        if self.principal not in (principal, WILDCARD_PRINCIPAL):
            return None
        if self.host not in (WILDCARD, host):
            return None
        if self.operation not in (Op.ALL, operation):
            if self.permission != Permission.ALLOW:
                return None
            if operation == Op.DESCRIBE and self.operation not in IMPLIES_DESCRIBE:
                return None
            if operation == Op.DESCRIBE_CONFIGS and self.operation not in IMPLIES_DESCRIBE_CONFIGS:
                return None
            if operation not in (Op.DESCRIBE, Op.DESCRIBE_CONFIGS):
                return None
        return self.permission


def invalid_binding(acl: AclBinding) -> str | None:
    """Why CreateAcls refuses this ACL (INVALID_REQUEST), as Kafka's AclControlManager
    `validateNewAcl` says it; None if it is valid."""
    if acl.resource_type in (ResourceType.UNKNOWN, ResourceType.ANY):
        return f"Invalid resourceType {acl.resource_type.name}"
    if acl.pattern_type not in (PatternType.LITERAL, PatternType.PREFIXED):
        return f"Invalid patternType {acl.pattern_type.name}"
    if acl.operation in (Op.UNKNOWN, Op.ANY):
        return f"Invalid operation {acl.operation.name}"
    if acl.permission not in (Permission.ALLOW, Permission.DENY):
        return f"Invalid permissionType {acl.permission.name}"
    if not acl.resource_name:
        return "Resource name should not be empty"
    if acl.resource_type == ResourceType.CLUSTER and acl.resource_name != CLUSTER_NAME:
        return "The only valid name for the CLUSTER resource is kafka-cluster"
    kind, sep, name = acl.principal.partition(":")
    if not sep or not kind or not name:
        return (
            f"Could not parse principal from `{acl.principal}` (no colon is present separating "
            "the principal type from the principal name)"
        )
    return None


def code_of(enum: type[E], code: int) -> E:
    """The member with this code; UNKNOWN (0) for a code Kafka does not define, as Kafka's
    `fromCode` does."""
    try:
        return enum(code)
    except ValueError:
        return enum(0)


@dataclass(frozen=True, slots=True)
class AclFilter:
    """DescribeAcls' and DeleteAcls' filter: None or ANY matches anything; a MATCH pattern
    matches every ACL that would apply to the named resource (literal, `*`, prefixes)."""

    resource_type: ResourceType
    resource_name: str | None
    pattern_type: PatternType
    principal: str | None
    host: str | None
    operation: AclOperation
    permission: Permission

    def unknown_elements(self) -> bool:
        """Kafka answers a filter with an UNKNOWN element with INVALID_REQUEST."""
        return (
            self.resource_type == ResourceType.UNKNOWN
            or self.pattern_type == PatternType.UNKNOWN
            or self.operation == Op.UNKNOWN
            or self.permission == Permission.UNKNOWN
        )

    def matches(self, acl: AclBinding) -> bool:
        return self._matches_pattern(acl) and self._matches_entry(acl)

    def _matches_pattern(self, acl: AclBinding) -> bool:
        # ResourcePatternFilter.matches
        if self.resource_type not in (ResourceType.ANY, acl.resource_type):
            return False
        if self.pattern_type not in (PatternType.ANY, PatternType.MATCH, acl.pattern_type):
            return False
        if self.resource_name is None:
            return True
        if self.pattern_type in (PatternType.ANY, acl.pattern_type):
            return self.resource_name == acl.resource_name
        if acl.pattern_type == PatternType.PREFIXED:
            return self.resource_name.startswith(acl.resource_name)
        return acl.resource_name in (self.resource_name, WILDCARD)

    def _matches_entry(self, acl: AclBinding) -> bool:
        # AccessControlEntryFilter.matches
        return (
            self.principal in (None, acl.principal)
            and self.host in (None, acl.host)
            and self.operation in (Op.ANY, acl.operation)
            and self.permission in (Permission.ANY, acl.permission)
        )


def parse_super_users(value: str) -> frozenset[str]:
    """`super.users`: principals separated by `;` (`User:alice;User:bob`)."""
    return frozenset(user.strip() for user in value.split(";") if user.strip())


class Authorizer:
    """Decides requests from a set of ACLs (owned by the caller; read at each decision)."""

    def __init__(
        self, acls: AclSource, super_users: frozenset[str], allow_if_no_acl_found: bool
    ) -> None:
        self.acls = acls
        self.super_users = super_users
        self.allow_if_no_acl_found = allow_if_no_acl_found

    def authorize(
        self, principal: str, host: str, operation: AclOperation, kind: ResourceType, name: str
    ) -> bool:
        if principal in self.super_users:
            return True
        named = False
        allowed = False
        for acl in self.acls.bindings():
            if not acl.covers(kind, name):
                continue
            named = True
            decision = acl.decides(principal, host, operation)
            if decision == Permission.DENY:
                return False
            allowed = allowed or decision == Permission.ALLOW
        return allowed or (not named and self.allow_if_no_acl_found)

    def authorized_operations(
        self, principal: str, host: str, kind: ResourceType, name: str
    ) -> int:
        """The bit field of the supported operations this principal may do on the resource
        (AuthHelper.authorizedOperations)."""
        return operations_field(
            op
            for op in SUPPORTED_OPERATIONS[kind]
            if self.authorize(principal, host, op, kind, name)
        )

    def authorize_any(
        self, principal: str, host: str, operation: AclOperation, kind: ResourceType
    ) -> bool:
        """Whether the principal may do `operation` on at least one resource of `kind`
        (Authorizer.authorizeByResourceType, KIP-679): an ALLOW (the operation itself or ALL)
        whose pattern no DENY covers."""
        if self.authorize(principal, host, operation, kind, "hardcode"):
            return True
        applying = [
            acl
            for acl in self.acls.bindings()
            if acl.resource_type == kind
            and acl.principal in (principal, WILDCARD_PRINCIPAL)
            and acl.host in (WILDCARD, host)
            and acl.operation in (operation, Op.ALL)
        ]
        denies = [acl for acl in applying if acl.permission == Permission.DENY]
        if any(
            d.pattern_type == PatternType.LITERAL and d.resource_name == WILDCARD for d in denies
        ):
            return False
        for allow in applying:
            if allow.permission != Permission.ALLOW:
                continue
            if not any(_denied_pattern(deny, allow) for deny in denies):
                return True
        return False


def _denied_pattern(deny: AclBinding, allow: AclBinding) -> bool:
    """Whether a DENY's pattern covers everything an ALLOW's pattern grants."""
    if deny.pattern_type == PatternType.PREFIXED:
        return allow.resource_name.startswith(deny.resource_name)
    return allow.pattern_type == PatternType.LITERAL and allow.resource_name == deny.resource_name


class AclSource:
    """Where an `Authorizer` reads the ACLs from (`samsa.security.acl_store.AclStore`)."""

    def bindings(self) -> Iterable[AclBinding]:
        raise NotImplementedError
