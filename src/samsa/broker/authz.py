"""The authorizer's checks as handlers ask them: one call per check of Kafka's KafkaApis.

Every helper answers "allowed" when no authorizer is configured (`authorizer.class.name`
empty), as Kafka's AuthHelper does with `authorizer = None`. A handler asks exactly what
Kafka's handler for that API asks, in the same order, and answers with the same error code;
docs/security.md lists each API's checks.

The client's host is compared as Kafka compares it: the address without Java's leading `/`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode
from kio.static.primitive import i32

from samsa.protocol.codec import Request
from samsa.security.acl import (
    CLUSTER_NAME,
    SUPPORTED_OPERATIONS,
    AclOperation,
    ResourceType,
    operations_field,
)

if TYPE_CHECKING:
    from samsa.broker.core import Broker

Op = AclOperation
Kind = ResourceType


def host(request: Request[Any]) -> str:
    return request.client_host.removeprefix("/")


def allowed(broker: Broker, request: Request[Any], op: AclOperation, kind: Kind, name: str) -> bool:
    authorizer = broker.authorizer
    return authorizer is None or authorizer.authorize(
        request.principal, host(request), op, kind, name
    )


def cluster_allowed(broker: Broker, request: Request[Any], op: AclOperation) -> bool:
    return allowed(broker, request, op, Kind.CLUSTER, CLUSTER_NAME)


def allowed_names(
    broker: Broker, request: Request[Any], op: AclOperation, kind: Kind, names: Iterable[str]
) -> set[str]:
    """The names among `names` the request may do `op` on (Kafka's `filterByAuthorized`)."""
    return {name for name in set(names) if allowed(broker, request, op, kind, name)}


def allowed_any(broker: Broker, request: Request[Any], op: AclOperation, kind: Kind) -> bool:
    """Whether `op` is allowed on some resource of `kind` (`authorizeByResourceType`)."""
    authorizer = broker.authorizer
    return authorizer is None or authorizer.authorize_any(
        request.principal, host(request), op, kind
    )


def operations(broker: Broker, request: Request[Any], kind: Kind, name: str) -> i32:
    """The authorized-operations bit field of one resource (`AuthHelper.authorizedOperations`):
    every supported operation without an authorizer."""
    authorizer = broker.authorizer
    if authorizer is None:
        return i32(operations_field(SUPPORTED_OPERATIONS[kind]))
    return i32(authorizer.authorized_operations(request.principal, host(request), kind, name))


# Kafka's Topic.isInternal: the coordinators' logs, which clients never write or add to a
# transaction directly.
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})

# The messages of Kafka's Errors for the authorization errors, where a response carries one.
MESSAGES = {
    ErrorCode.topic_authorization_failed: "Topic authorization failed.",
    ErrorCode.group_authorization_failed: "Group authorization failed.",
    ErrorCode.cluster_authorization_failed: "Cluster authorization failed.",
    ErrorCode.transactional_id_authorization_failed: "Transactional Id authorization failed.",
}


def group_refusal(
    broker: Broker, request: Request[Any], op: AclOperation, group_id: str
) -> ErrorCode | None:
    """GROUP_AUTHORIZATION_FAILED unless `op` is allowed on the group: the first check of
    every group API (`Read` for membership and commits, `Describe`, `Delete`)."""
    if allowed(broker, request, op, Kind.GROUP, group_id):
        return None
    return ErrorCode.group_authorization_failed


def txn_refusal(broker: Broker, request: Request[Any], transactional_id: str) -> ErrorCode | None:
    """TRANSACTIONAL_ID_AUTHORIZATION_FAILED unless WRITE is allowed on the transactional id:
    the first check of every transactional API."""
    if allowed(broker, request, Op.WRITE, Kind.TRANSACTIONAL_ID, transactional_id):
        return None
    return ErrorCode.transactional_id_authorization_failed
