"""CreateAcls, DescribeAcls and DeleteAcls, as Kafka's AclApis answers them.

Each first needs ALTER (Create/Delete) or DESCRIBE (Describe) on the cluster, else
CLUSTER_AUTHORIZATION_FAILED; without an authorizer each answers SECURITY_DISABLED. An ACL or
filter with an UNKNOWN element, or an ACL Kafka's AclControlManager would refuse, is answered
INVALID_REQUEST (Kafka closes the connection for UNKNOWN elements, which its request classes
refuse while parsing; samsa answers the error instead). Changes are written to the data dir
before the answer (`samsa.security.acl_store`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kio.schema.create_acls.v3.request import CreateAclsRequest
from kio.schema.create_acls.v3.response import AclCreationResult, CreateAclsResponse
from kio.schema.delete_acls.v3.request import DeleteAclsRequest
from kio.schema.delete_acls.v3.response import (
    DeleteAclsFilterResult,
    DeleteAclsMatchingAcl,
    DeleteAclsResponse,
)
from kio.schema.describe_acls.v3.request import DescribeAclsRequest
from kio.schema.describe_acls.v3.response import (
    DescribeAclsResponse,
)
from kio.schema.errors import ErrorCode
from kio.static.primitive import i8

from samsa.broker import authz
from samsa.broker.outcomes import Outcome
from samsa.broker.routing import NO_THROTTLE, reply
from samsa.protocol.codec import Request
from samsa.security import acl_wire
from samsa.security.acl import (
    AclBinding,
    AclOperation,
    invalid_binding,
)
from samsa.security.acl_store import AclStoreError

if TYPE_CHECKING:
    from samsa.broker.core import Broker

NO_AUTHORIZER = "No Authorizer is configured."
UNKNOWN_ELEMENTS = "Filter contain UNKNOWN elements"
MESSAGES = {
    **authz.MESSAGES,
    ErrorCode.security_disabled: NO_AUTHORIZER,
    ErrorCode.invalid_request: UNKNOWN_ELEMENTS,
}


def _refusal(broker: Broker, request: Request[object], op: AclOperation) -> ErrorCode | None:
    if not authz.cluster_allowed(broker, request, op):
        return ErrorCode.cluster_authorization_failed
    if broker.authorizer is None:
        return ErrorCode.security_disabled
    return None


def _message(error: ErrorCode) -> str | None:
    return MESSAGES.get(error)


def _write(change: Callable[[], object]) -> tuple[ErrorCode, str] | None:
    """Change the ACLs (the file is written before the answer); why not, if it failed: the
    disk (KAFKA_STORAGE_ERROR), or the limit on ACLs (POLICY_VIOLATION). Nothing changed then."""
    try:
        change()
    except AclStoreError as exc:
        return ErrorCode.policy_violation, str(exc)
    except OSError as exc:
        return ErrorCode.kafka_storage_error, f"the ACLs could not be written: {exc}"
    return None


def handle_create_acls(broker: Broker, request: Request[CreateAclsRequest]) -> Outcome:
    refusal = _refusal(broker, request, AclOperation.ALTER)
    creations = request.payload.creations
    if refusal is not None:
        results = [AclCreationResult(error_code=refusal, error_message=_message(refusal))]
        return _created(request, results * len(creations))
    bindings = [acl_wire.binding(creation) for creation in creations]
    problems = [invalid_binding(acl) for acl in bindings]
    valid = [acl for acl, problem in zip(bindings, problems, strict=True) if not problem]
    failure = _write(lambda: broker.acls.add(valid))
    if failure is not None:
        failed = AclCreationResult(error_code=failure[0], error_message=failure[1])
        return _created(request, [failed] * len(creations))
    return _created(
        request,
        [
            AclCreationResult(
                error_code=ErrorCode.invalid_request if problem else ErrorCode.none,
                error_message=problem,
            )
            for problem in problems
        ],
    )


def _created(request: Request[CreateAclsRequest], results: list[AclCreationResult]) -> Outcome:
    return reply(request, CreateAclsResponse(throttle_time=NO_THROTTLE, results=tuple(results)))


def handle_describe_acls(broker: Broker, request: Request[DescribeAclsRequest]) -> Outcome:
    refusal = _refusal(broker, request, AclOperation.DESCRIBE)
    wanted = acl_wire.acl_filter(request.payload)
    if refusal is None and wanted.unknown_elements():
        refusal = ErrorCode.invalid_request
    if refusal is not None:
        message = (
            "No Authorizer is configured on the broker"
            if refusal == ErrorCode.security_disabled
            else _message(refusal)
        )
        return reply(
            request,
            DescribeAclsResponse(
                throttle_time=NO_THROTTLE, error_code=refusal, error_message=message, resources=()
            ),
        )
    found = (acl for acl in broker.acls.bindings() if wanted.matches(acl))
    return reply(
        request,
        DescribeAclsResponse(
            throttle_time=NO_THROTTLE,
            error_code=ErrorCode.none,
            error_message=None,
            resources=acl_wire.resources(found),
        ),
    )


def handle_delete_acls(broker: Broker, request: Request[DeleteAclsRequest]) -> Outcome:
    refusal = _refusal(broker, request, AclOperation.ALTER)
    filters = [acl_wire.acl_filter(wire) for wire in request.payload.filters]
    if refusal is not None:
        failed = DeleteAclsFilterResult(
            error_code=refusal, error_message=_message(refusal), matching_acls=()
        )
        return _deleted(request, [failed] * len(filters))
    valid = [f for f in filters if not f.unknown_elements()]
    matched: list[list[AclBinding]] = []
    failure = _write(lambda: matched.extend(broker.acls.remove(valid)))
    if failure is not None:
        failed = DeleteAclsFilterResult(
            error_code=failure[0], error_message=failure[1], matching_acls=()
        )
        return _deleted(request, [failed] * len(filters))
    removed = iter(matched)
    results = [
        DeleteAclsFilterResult(
            error_code=ErrorCode.invalid_request, error_message=UNKNOWN_ELEMENTS, matching_acls=()
        )
        if f.unknown_elements()
        else DeleteAclsFilterResult(
            error_code=ErrorCode.none,
            error_message=None,
            matching_acls=tuple(_matching(acl) for acl in next(removed)),
        )
        for f in filters
    ]
    return _deleted(request, results)


def _matching(acl: AclBinding) -> DeleteAclsMatchingAcl:
    return DeleteAclsMatchingAcl(
        error_code=ErrorCode.none,
        error_message=None,
        resource_type=i8(acl.resource_type),
        resource_name=acl.resource_name,
        pattern_type=i8(acl.pattern_type),
        principal=acl.principal,
        host=acl.host,
        operation=i8(acl.operation),
        permission_type=i8(acl.permission),
    )


def _deleted(request: Request[DeleteAclsRequest], results: list[DeleteAclsFilterResult]) -> Outcome:
    return reply(
        request, DeleteAclsResponse(throttle_time=NO_THROTTLE, filter_results=tuple(results))
    )
