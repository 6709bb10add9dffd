"""ACLs and filters to and from CreateAcls, DescribeAcls and DeleteAcls (kio's types), for the
broker's handlers and the `samsa acl` client. A code Kafka does not define reads as UNKNOWN."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from kio.schema.create_acls.v3.request import AclCreation
from kio.schema.delete_acls.v3.request import DeleteAclsFilter
from kio.schema.describe_acls.v3.request import DescribeAclsRequest
from kio.schema.describe_acls.v3.response import AclDescription, DescribeAclsResource
from kio.static.primitive import i8

from samsa.security.acl import (
    AclBinding,
    AclFilter,
    AclOperation,
    PatternType,
    Permission,
    ResourceType,
    code_of,
)


def binding(creation: AclCreation) -> AclBinding:
    return AclBinding(
        code_of(ResourceType, creation.resource_type),
        creation.resource_name,
        code_of(PatternType, creation.resource_pattern_type),
        creation.principal,
        creation.host,
        code_of(AclOperation, creation.operation),
        code_of(Permission, creation.permission_type),
    )


def creation(acl: AclBinding) -> AclCreation:
    return AclCreation(
        resource_type=i8(acl.resource_type),
        resource_name=acl.resource_name,
        resource_pattern_type=i8(acl.pattern_type),
        principal=acl.principal,
        host=acl.host,
        operation=i8(acl.operation),
        permission_type=i8(acl.permission),
    )


def acl_filter(wire: DescribeAclsRequest | DeleteAclsFilter) -> AclFilter:
    return AclFilter(
        code_of(ResourceType, wire.resource_type_filter),
        wire.resource_name_filter,
        code_of(PatternType, wire.pattern_type_filter),
        wire.principal_filter,
        wire.host_filter,
        code_of(AclOperation, wire.operation),
        code_of(Permission, wire.permission_type),
    )


def filter_fields(f: AclFilter) -> dict[str, Any]:
    """The fields of a DescribeAclsRequest or a DeleteAclsFilter."""
    return dict(
        resource_type_filter=i8(f.resource_type),
        resource_name_filter=f.resource_name,
        pattern_type_filter=i8(f.pattern_type),
        principal_filter=f.principal,
        host_filter=f.host,
        operation=i8(f.operation),
        permission_type=i8(f.permission),
    )


def resources(acls: Iterable[AclBinding]) -> tuple[DescribeAclsResource, ...]:
    """DescribeAcls' answer: the ACLs grouped by resource pattern."""

    def pattern(acl: AclBinding) -> tuple[ResourceType, str, PatternType]:
        return acl.resource_type, acl.resource_name, acl.pattern_type

    return tuple(
        DescribeAclsResource(
            resource_type=i8(kind),
            resource_name=name,
            pattern_type=i8(pattern_type),
            acls=tuple(
                AclDescription(
                    principal=acl.principal,
                    host=acl.host,
                    operation=i8(acl.operation),
                    permission_type=i8(acl.permission),
                )
                for acl in group
            ),
        )
        for (kind, name, pattern_type), group in itertools.groupby(sorted(acls), key=pattern)
    )


def described(found: Iterable[DescribeAclsResource]) -> list[AclBinding]:
    return [
        AclBinding(
            code_of(ResourceType, resource.resource_type),
            resource.resource_name,
            code_of(PatternType, resource.pattern_type),
            acl.principal,
            acl.host,
            code_of(AclOperation, acl.operation),
            code_of(Permission, acl.permission_type),
        )
        for resource in found
        for acl in resource.acls
    ]
