"""CreateAcls, DescribeAcls and DeleteAcls through confluent-kafka's AdminClient, their errors
(SECURITY_DISABLED, CLUSTER_AUTHORIZATION_FAILED, INVALID_REQUEST), and the ACLs' persistence
across a clean restart and kill -9."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import cast

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from kio.schema.create_acls.v3.request import AclCreation, CreateAclsRequest
from kio.schema.describe_acls.v3.request import DescribeAclsRequest
from kio.schema.errors import ErrorCode
from kio.static.primitive import i8

from samsa import config as broker_config
from samsa.broker.core import Broker, Endpoint
from samsa.broker.topics import DataDirError
from samsa.log.storage import OsStorage
from samsa.protocol.legacy.create_acls.v0.request import AclCreation as AclCreationV0
from samsa.protocol.legacy.create_acls.v0.request import CreateAclsRequest as CreateAclsV0
from samsa.protocol.legacy.delete_acls.v0.request import DeleteAclsFilter as DeleteAclsFilterV0
from samsa.protocol.legacy.delete_acls.v0.request import DeleteAclsRequest as DeleteAclsV0
from samsa.protocol.legacy.describe_acls.v0.request import DescribeAclsRequest as DescribeAclsV0
from samsa.security import acl_store
from samsa.testing import BrokerProcess, EmbeddedBroker
from samsa.testing.principals import as_principals, authorizer_settings
from samsa.testing.wire import Conn

pytestmark = pytest.mark.interop
TIMEOUT_S = 30.0


@pytest.fixture
def secured(tmp_path: object) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(str(tmp_path) + "/data", authorizer_settings()) as broker:
        as_principals(broker, {"admin": "User:admin", "alice": "User:alice"})
        yield broker


def admin_as(broker: EmbeddedBroker | BrokerProcess, client_id: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap, "client.id": client_id})


def read_acl(topic: str, principal: str = "User:alice") -> AclBinding:
    return AclBinding(
        ResourceType.TOPIC,
        topic,
        ResourcePatternType.LITERAL,
        principal,
        "*",
        AclOperation.READ,
        AclPermissionType.ALLOW,
    )


# confluent-kafka's stubs type the names as str; None ("any") is what its docs ask for.
ANY = cast(str, None)


def acl_filter(kind: ResourceType, name: str, pattern: ResourcePatternType) -> AclBindingFilter:
    return AclBindingFilter(kind, name, pattern, ANY, ANY, AclOperation.ANY, AclPermissionType.ANY)


EVERYTHING = acl_filter(ResourceType.ANY, ANY, ResourcePatternType.ANY)


def describe_everything() -> DescribeAclsRequest:
    return DescribeAclsRequest(
        resource_type_filter=i8(1),
        resource_name_filter=None,
        pattern_type_filter=i8(1),
        principal_filter=None,
        host_filter=None,
        operation=i8(1),
        permission_type=i8(1),
    )


def create(admin: AdminClient, *acls: AclBinding) -> None:
    for future in admin.create_acls(list(acls), request_timeout=TIMEOUT_S).values():
        future.result()


def describe(admin: AdminClient, wanted: AclBindingFilter = EVERYTHING) -> set[AclBinding]:
    return set(admin.describe_acls(wanted, request_timeout=TIMEOUT_S).result())


def test_create_describe_delete(secured: EmbeddedBroker) -> None:
    admin = admin_as(secured, "admin")
    prefixed = AclBinding(
        ResourceType.GROUP,
        "app-",
        ResourcePatternType.PREFIXED,
        "User:alice",
        "10.0.0.1",
        AclOperation.READ,
        AclPermissionType.DENY,
    )
    create(admin, read_acl("orders"), read_acl("*"), prefixed)
    assert describe(admin) == {read_acl("orders"), read_acl("*"), prefixed}
    # MATCH: every ACL that applies to the named resource, the wildcard's too.
    match_orders = acl_filter(ResourceType.TOPIC, "orders", ResourcePatternType.MATCH)
    assert describe(admin, match_orders) == {read_acl("orders"), read_acl("*")}
    match_group = acl_filter(ResourceType.GROUP, "app-1", ResourcePatternType.MATCH)
    assert describe(admin, match_group) == {prefixed}
    deleted = admin.delete_acls([match_orders], request_timeout=TIMEOUT_S)
    assert set(next(iter(deleted.values())).result()) == {read_acl("orders"), read_acl("*")}
    assert describe(admin) == {prefixed}


def test_without_cluster_rights_refused(secured: EmbeddedBroker) -> None:
    alice = admin_as(secured, "alice")
    with pytest.raises(KafkaException) as refused:
        create(alice, read_acl("orders"))
    assert refused.value.args[0].code() == ErrorCode.cluster_authorization_failed
    # librdkafka (2.x) hands back an empty list for a DescribeAcls refused as a whole, so the
    # refusal is read off the wire.
    with Conn(secured.bootstrap, client_id="alice") as conn:
        response = conn.request(describe_everything())
    assert response.error_code == ErrorCode.cluster_authorization_failed
    assert describe(admin_as(secured, "admin")) == set()


def test_without_authorizer_security_disabled(samsa_broker: EmbeddedBroker) -> None:
    admin = admin_as(samsa_broker, "anyone")
    with pytest.raises(KafkaException) as refused:
        create(admin, read_acl("orders"))
    assert refused.value.args[0].code() == ErrorCode.security_disabled
    with Conn(samsa_broker.bootstrap) as conn:
        response = conn.request(describe_everything())
    assert response.error_code == ErrorCode.security_disabled


def test_version_0_creates_describes_and_deletes_literal_acls(secured: EmbeddedBroker) -> None:
    """v0, which Kafka 4.0 removed and 3.9 served, has no pattern type: LITERAL throughout."""
    topic, read, allow = i8(2), i8(3), i8(3)
    with Conn(secured.bootstrap, client_id="admin") as conn:
        created = conn.request(
            CreateAclsV0(
                creations=(
                    AclCreationV0(
                        resource_type=topic,
                        resource_name="orders",
                        principal="User:alice",
                        host="*",
                        operation=read,
                        permission_type=allow,
                    ),
                )
            )
        )
        assert [r.error_code for r in created.results] == [ErrorCode.none]
        assert describe(admin_as(secured, "admin")) == {read_acl("orders")}
        everything: dict[str, object] = dict(
            resource_type_filter=i8(1),  # ANY
            resource_name_filter=None,
            principal_filter=None,
            host_filter=None,
            operation=i8(1),
            permission_type=i8(1),
        )
        described = conn.request(DescribeAclsV0(**everything))  # type: ignore[arg-type]
        assert described.error_code == ErrorCode.none
        assert [(r.resource_name, [a.principal for a in r.acls]) for r in described.resources] == [
            ("orders", ["User:alice"])
        ]
        deleted = conn.request(DeleteAclsV0(filters=(DeleteAclsFilterV0(**everything),)))  # type: ignore[arg-type]
        assert [len(r.matching_acls) for r in deleted.filter_results] == [1]
    assert describe(admin_as(secured, "admin")) == set()


def test_invalid_acls_refused_one_by_one(secured: EmbeddedBroker) -> None:
    def creation(**changes: object) -> AclCreation:
        fields: dict[str, object] = dict(
            resource_type=i8(2),
            resource_name="orders",
            resource_pattern_type=i8(3),
            principal="User:alice",
            host="*",
            operation=i8(3),
            permission_type=i8(3),
        )
        fields.update(changes)
        return AclCreation(**fields)  # type: ignore[arg-type]

    request = CreateAclsRequest(
        creations=(
            creation(),
            creation(resource_pattern_type=i8(2)),  # MATCH is for filters
            creation(resource_type=i8(4)),  # CLUSTER is named kafka-cluster
            creation(operation=i8(1)),  # ANY
            creation(principal="alice"),
            creation(resource_name=""),
            creation(resource_type=i8(99)),
        )
    )
    with Conn(secured.bootstrap, client_id="admin") as conn:
        response = conn.request(request)
    assert [r.error_code for r in response.results] == [ErrorCode.none] + [
        ErrorCode.invalid_request
    ] * 6
    assert response.results[2].error_message == (
        "The only valid name for the CLUSTER resource is kafka-cluster"
    )
    assert describe(admin_as(secured, "admin")) == {read_acl("orders")}


def test_acls_survive_restart(secured: EmbeddedBroker) -> None:
    create(admin_as(secured, "admin"), read_acl("orders"))
    secured.restart()
    as_principals(secured, {"admin": "User:admin"})
    assert describe(admin_as(secured, "admin")) == {read_acl("orders")}


def test_acls_survive_kill_9(tmp_path: object) -> None:
    data_dir = str(tmp_path) + "/data"
    # No stand-in principals in a subprocess: everyone is User:ANONYMOUS, made a super user.
    process = BrokerProcess(data_dir, authorizer_settings("User:ANONYMOUS"))
    process.start()
    try:
        create(admin_as(process, "x"), read_acl("orders"), read_acl("payments"))
        process.kill9()
        process.start()
        assert describe(admin_as(process, "x")) == {read_acl("orders"), read_acl("payments")}
        assert os.path.exists(os.path.join(data_dir, "acls.json"))
    finally:
        process.stop()


def test_damaged_acl_file_refuses_the_start(tmp_path: object) -> None:
    data_dir = str(tmp_path) + "/data"
    with EmbeddedBroker(data_dir, authorizer_settings()):
        pass
    with open(os.path.join(data_dir, "acls.json"), "w") as f:
        f.write('{"acls": [{"resource_type": "TOPIC"}]}')
    broker = Broker(
        broker_config.load(authorizer_settings()),
        OsStorage(),
        data_dir,
        lambda: 0,
        Endpoint("127.0.0.1", 9092),
    )
    with pytest.raises(DataDirError, match=r"acls\.json is damaged"):
        broker.open()


def test_over_the_limit_nothing_is_added(
    secured: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(acl_store, "ACLS_MAX", 2)
    admin = admin_as(secured, "admin")
    create(admin, read_acl("orders"))
    with pytest.raises(KafkaException) as refused:
        create(admin, read_acl("a"), read_acl("b"))
    assert refused.value.args[0].code() == ErrorCode.policy_violation
    assert describe(admin) == {read_acl("orders")}
