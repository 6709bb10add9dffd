"""`samsa acl` on a stopped broker's data dir and through a running broker: what it adds is
what the broker enforces, list and remove take kafka-acls.sh's options, misuse is one line on
stderr and exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from kio.schema.errors import ErrorCode

from samsa.testing import BrokerProcess, EmbeddedBroker
from samsa.testing.principals import as_principals, authorizer_settings
from samsa.testing.wire import Conn, fetch_request

pytestmark = pytest.mark.interop
SAMSA = str(Path(sys.executable).with_name("samsa"))


def samsa_acl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SAMSA, "acl", *args], capture_output=True, text=True, timeout=60, check=False
    )


def refused(broker: EmbeddedBroker, client: str, topic: str) -> bool:
    with Conn(broker.bootstrap, client_id=client) as conn:
        response = conn.request(fetch_request(topic, [0]))
    codes = {p.error_code for t in response.responses for p in t.partitions}
    return ErrorCode.topic_authorization_failed in codes


def test_data_dir_acls_are_enforced(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    with EmbeddedBroker(data_dir, authorizer_settings()):
        pass  # a data dir, then stopped
    added = samsa_acl(
        "--data-dir", data_dir, "add", "--allow-principal", "User:alice",
        "--operation", "Read", "--resource-pattern-type", "prefixed", "--topic", "orders-",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "patternType=PREFIXED" in added.stdout and "operation=READ" in added.stdout
    listed = samsa_acl(
        "--data-dir", data_dir, "list", "--topic", "orders-eu", "--resource-pattern-type", "match"
    )
    assert "principal=User:alice" in listed.stdout
    with EmbeddedBroker(data_dir, authorizer_settings()) as broker:
        as_principals(broker, {"alice": "User:alice", "bob": "User:bob"})
        assert not refused(broker, "alice", "orders-eu")
        assert refused(broker, "bob", "orders-eu")
        assert refused(broker, "alice", "payments")
        locked = samsa_acl(
            "--data-dir", data_dir, "add", "--allow-principal", "User:bob", "--topic", "x"
        )
        assert locked.returncode == 1 and "in use" in locked.stderr
    removed = samsa_acl("--data-dir", data_dir, "remove", "--allow-principal", "User:alice")
    assert removed.returncode == 0 and "Removed ACLs" in removed.stdout
    assert samsa_acl("--data-dir", data_dir, "list").stdout == ""


def test_through_the_broker(tmp_path: Path) -> None:
    process = BrokerProcess(str(tmp_path / "data"), authorizer_settings("User:ANONYMOUS"))
    process.start()
    try:
        bootstrap = process.bootstrap
        added = samsa_acl(
            "--bootstrap", bootstrap, "add", "--deny-principal", "User:*", "--operation", "Write",
            "--topic", "audit", "--group", "auditors", "--transactional-id", "t1", "--cluster",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        listed = samsa_acl("--bootstrap", bootstrap, "list")
        assert listed.stdout.count("permissionType=DENY") == 4, listed.stdout
        removed = samsa_acl("--bootstrap", bootstrap, "remove", "--group", "auditors")
        assert removed.returncode == 0 and "name=auditors" in removed.stdout
        assert samsa_acl("--bootstrap", bootstrap, "list").stdout.count("DENY") == 3
    finally:
        process.stop()


def test_without_authorizer_the_broker_refuses(samsa_broker: EmbeddedBroker) -> None:
    listed = samsa_acl("--bootstrap", samsa_broker.bootstrap, "list")
    assert listed.returncode == 1
    assert (
        listed.stderr.strip()
        == "samsa acl list: SECURITY_DISABLED: No Authorizer is configured on the broker"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["add", "--topic", "x"],
        ["add", "--allow-principal", "User:a"],
        ["add", "--allow-principal", "alice", "--topic", "x"],
        ["add", "--allow-principal", "User:a", "--topic", "x", "--operation", "Reed"],
        ["add", "--allow-principal", "User:a", "--topic", "x", "--resource-pattern-type", "match"],
    ],
)
def test_misuse_is_one_line_and_status_2(tmp_path: Path, args: list[str]) -> None:
    result = samsa_acl("--data-dir", str(tmp_path), *args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
