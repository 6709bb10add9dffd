"""`samsa serve` as a user runs it: users added with `samsa users add`, then a SASL listener
and the authorizer from `--set` (Kafka's names), and a real client refused until a super user
grants it an ACL."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
from kio.schema.errors import ErrorCode

from samsa.testing import BrokerProcess
from samsa.testing.process import SAMSA
from samsa.testing.security import AUTHORIZER_CLASS
from security.test_secure_fixture_acls import delivery_error

pytestmark = pytest.mark.interop
TIMEOUT_S = 30.0


def test_samsa_serve_authenticates_and_enforces_acls(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    (tmp_path / "data").mkdir()
    for user in ("admin", "alice"):
        add = [SAMSA, "users", "add", user, "--data-dir", data_dir, "--password", f"{user}-pw"]
        subprocess.run(add, check=True, timeout=TIMEOUT_S)
    settings = {
        "listeners": "SASL_PLAINTEXT://127.0.0.1:0",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "authorizer.class.name": AUTHORIZER_CLASS,
        "super.users": "User:admin",
    }
    broker = BrokerProcess(data_dir, settings).start()
    try:
        (port,) = (
            m.group(1)
            for line in broker.output
            if (m := re.match(r"\s*listener SASL_PLAINTEXT on port (\d+)", line))
        )

        def config(user: str) -> dict[str, Any]:
            return {
                "bootstrap.servers": f"127.0.0.1:{port}",
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": user,
                "sasl.password": f"{user}-pw",
            }

        admin = AdminClient(config("admin"))
        admin.create_topics([NewTopic("orders", 1, 1)])["orders"].result(TIMEOUT_S)
        assert delivery_error(config("alice"), "orders") == ErrorCode.topic_authorization_failed
        write = AclBinding(
            ResourceType.TOPIC,
            "orders",
            ResourcePatternType.LITERAL,
            "User:alice",
            "*",
            AclOperation.WRITE,
            AclPermissionType.ALLOW,
        )
        for future in admin.create_acls([write], request_timeout=TIMEOUT_S).values():
            future.result()
        assert delivery_error(config("alice"), "orders") is None
    finally:
        broker.stop()
