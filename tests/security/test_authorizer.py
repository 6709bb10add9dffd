"""The authorizer's semantics, as Kafka's StandardAuthorizerData decides: DENY wins, implied
operations, prefixes and the `*` wildcard, hosts, super users, allow.everyone.if.no.acl.found,
authorizeByResourceType; and DescribeAcls/DeleteAcls filters (MATCH, ANY)."""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import given
from hypothesis import strategies as st

from samsa.security.acl import (
    AclBinding,
    AclFilter,
    AclOperation,
    AclSource,
    Authorizer,
    PatternType,
    Permission,
    ResourceType,
    operations_field,
)

Op = AclOperation
TOPIC = ResourceType.TOPIC
ALICE = "User:alice"
HOST = "10.0.0.1"


class Acls(AclSource):
    def __init__(self, *acls: AclBinding) -> None:
        self.acls = list(acls)

    def bindings(self) -> Iterable[AclBinding]:
        return self.acls


def acl(
    name: str = "orders",
    op: AclOperation = Op.READ,
    permission: Permission = Permission.ALLOW,
    principal: str = ALICE,
    host: str = "*",
    pattern: PatternType = PatternType.LITERAL,
    kind: ResourceType = TOPIC,
) -> AclBinding:
    return AclBinding(kind, name, pattern, principal, host, op, permission)


def authorizer(*acls: AclBinding, everyone: bool = False, supers: str = "") -> Authorizer:
    return Authorizer(Acls(*acls), frozenset(s for s in [supers] if s), everyone)


def may(a: Authorizer, op: AclOperation, name: str = "orders", who: str = ALICE) -> bool:
    return a.authorize(who, HOST, op, TOPIC, name)


def test_allow_exact_operation_only() -> None:
    a = authorizer(acl(op=Op.READ))
    assert may(a, Op.READ)
    assert not may(a, Op.WRITE)
    assert not may(a, Op.READ, who="User:bob")


def test_implied_describe_and_describe_configs() -> None:
    for op in (Op.READ, Op.WRITE, Op.DELETE, Op.ALTER):
        assert may(authorizer(acl(op=op)), Op.DESCRIBE)
    assert not may(authorizer(acl(op=Op.CREATE)), Op.DESCRIBE)
    assert may(authorizer(acl(op=Op.ALTER_CONFIGS)), Op.DESCRIBE_CONFIGS)
    assert not may(authorizer(acl(op=Op.DESCRIBE_CONFIGS)), Op.ALTER_CONFIGS)


def test_deny_implies_nothing() -> None:
    a = authorizer(acl(op=Op.ALL), acl(op=Op.READ, permission=Permission.DENY))
    assert not may(a, Op.READ)
    assert may(a, Op.DESCRIBE)  # denying READ does not deny DESCRIBE


@given(
    st.sampled_from([Op.READ, Op.WRITE, Op.ALL]),
    st.sampled_from(["orders", "ord", "*"]),
    st.sampled_from([PatternType.LITERAL, PatternType.PREFIXED]),
    st.sampled_from([ALICE, "User:*"]),
)
def test_deny_wins(op: AclOperation, name: str, pattern: PatternType, principal: str) -> None:
    deny = acl(name, op, Permission.DENY, principal, pattern=pattern)
    if not deny.covers(TOPIC, "orders"):
        return
    a = authorizer(acl(op=Op.ALL), acl("*", Op.ALL), deny, supers="")
    asked = Op.READ if op == Op.ALL else op
    assert not may(a, asked)


@given(st.text(min_size=1, max_size=8), st.text(max_size=8))
def test_prefix_matches_names_that_start_with_it(prefix: str, rest: str) -> None:
    a = authorizer(acl(prefix, pattern=PatternType.PREFIXED))
    assert may(a, Op.READ, prefix + rest)
    other = "#" + prefix
    assert may(a, Op.READ, other) == other.startswith(prefix)


@given(st.text(min_size=1, max_size=8))
def test_wildcard_literal_matches_every_name(name: str) -> None:
    a = authorizer(acl("*"))
    assert may(a, Op.READ, name)
    # a literal ACL matches its own name only, whatever characters it holds ("*" alone is
    # not a literal name: it is the wildcard, Kafka's ResourcePattern.WILDCARD_RESOURCE)
    if name != "*":
        assert may(authorizer(acl(name)), Op.READ, name + "x") is False


def test_wildcard_principal_and_host() -> None:
    assert may(authorizer(acl(principal="User:*")), Op.READ, who="User:bob")
    assert may(authorizer(acl(host=HOST)), Op.READ)
    assert not may(authorizer(acl(host="10.0.0.2")), Op.READ)


def test_super_users_beat_deny() -> None:
    a = authorizer(acl(op=Op.ALL, permission=Permission.DENY, principal="User:*"), supers=ALICE)
    assert may(a, Op.DELETE)


def test_no_acl_found() -> None:
    assert not may(authorizer(), Op.READ)
    assert may(authorizer(everyone=True), Op.READ)
    # Any ACL on the resource, even another principal's, turns the default off.
    assert not may(authorizer(acl(principal="User:bob"), everyone=True), Op.READ)
    assert may(authorizer(acl(name="payments"), everyone=True), Op.READ)


def test_authorize_any_topic() -> None:
    def any_write(*acls: AclBinding) -> bool:
        return authorizer(*acls).authorize_any(ALICE, HOST, Op.WRITE, TOPIC)

    assert any_write(acl("orders", Op.WRITE))
    assert any_write(acl("ord", Op.ALL, pattern=PatternType.PREFIXED))
    assert not any_write(acl("orders", Op.READ))
    assert not any_write(
        acl("orders", Op.WRITE), acl("ord", Op.WRITE, Permission.DENY, pattern=PatternType.PREFIXED)
    )
    assert not any_write(acl("orders", Op.WRITE), acl("*", Op.WRITE, Permission.DENY))
    assert any_write(acl("orders", Op.WRITE), acl("payments", Op.WRITE, Permission.DENY))


def test_authorized_operations() -> None:
    a = authorizer(acl(op=Op.READ), acl(op=Op.ALTER_CONFIGS))
    expected = operations_field([Op.READ, Op.DESCRIBE, Op.ALTER_CONFIGS, Op.DESCRIBE_CONFIGS])
    assert a.authorized_operations(ALICE, HOST, TOPIC, "orders") == expected


def filter_of(name: str | None, pattern: PatternType, kind: ResourceType = TOPIC) -> AclFilter:
    return AclFilter(kind, name, pattern, None, None, Op.ANY, Permission.ANY)


def test_filters() -> None:
    literal, star, prefix = acl("orders"), acl("*"), acl("ord", pattern=PatternType.PREFIXED)
    every = [literal, star, prefix]

    def matched(f: AclFilter) -> list[AclBinding]:
        return [x for x in every if f.matches(x)]

    assert matched(filter_of("orders", PatternType.MATCH)) == every
    assert matched(filter_of("orders", PatternType.ANY)) == [literal]
    assert matched(filter_of("ord", PatternType.PREFIXED)) == [prefix]
    assert matched(filter_of(None, PatternType.LITERAL)) == [literal, star]
    assert matched(filter_of(None, PatternType.ANY, ResourceType.GROUP)) == []
    assert filter_of(None, PatternType.UNKNOWN).unknown_elements()
