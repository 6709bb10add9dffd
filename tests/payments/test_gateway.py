"""The payment gateway over real HTTP: replay (errors included), 422, 409, expiry, faults."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from samsa.effects.db import SQLiteDatabase
from samsa.payments.gateway import (
    DECLINED_CARD,
    Gateway,
    GatewayClient,
    GatewayFault,
    GatewayFaults,
    GatewayUnreachable,
)

PARAMS = {"amount": 5000, "currency": "usd", "card": "4242424242424242", "order_id": "ord_123"}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    with Gateway(SQLiteDatabase(str(tmp_path / "gw.db"))) as gateway:
        yield gateway


def test_same_key_same_params_replays_the_stored_charge(gateway: Gateway) -> None:
    client = GatewayClient(gateway.url)
    first = client.charge(PARAMS, "pay_abc")
    second = client.charge(PARAMS, "pay_abc")
    assert first.status == 200 and not first.replayed
    assert second.status == 200 and second.replayed
    assert second.body == first.body
    assert len(client.charges()) == 1


def test_without_a_key_every_request_charges(gateway: Gateway) -> None:
    client = GatewayClient(gateway.url)
    client.charge(PARAMS)
    client.charge(PARAMS)
    assert len(client.charges()) == 2


def test_errors_are_replayed_too(gateway: Gateway) -> None:
    client = GatewayClient(gateway.url)
    declined = {**PARAMS, "card": DECLINED_CARD}
    first = client.charge(declined, "pay_declined")
    second = client.charge(declined, "pay_declined")
    assert first.status == 402 and first.body["error"]["code"] == "card_declined"
    assert (second.status, second.body, second.replayed) == (402, first.body, True)
    assert client.charges() == []


def test_invalid_parameters_are_not_stored(gateway: Gateway) -> None:
    client = GatewayClient(gateway.url)
    bad = client.charge({**PARAMS, "amount": -1}, "pay_x")
    assert bad.status == 400
    good = client.charge(PARAMS, "pay_x")  # the key was not consumed by the invalid request
    assert good.status == 200 and not good.replayed


def test_same_key_different_params_is_422(gateway: Gateway) -> None:
    client = GatewayClient(gateway.url)
    assert client.charge(PARAMS, "pay_abc").status == 200
    mismatch = client.charge({**PARAMS, "amount": 5001}, "pay_abc")
    assert mismatch.status == 422
    assert mismatch.body["error"]["code"] == "idempotency_key_mismatch"
    assert len(client.charges()) == 1


def test_same_key_while_the_first_runs_is_409(tmp_path: Path) -> None:
    faults = GatewayFaults(first_at={GatewayFault.SLOW: 1}, slow_ms_range=(800, 800))
    with Gateway(SQLiteDatabase(str(tmp_path / "gw.db")), faults=faults) as gateway:
        results: list[int] = []
        slow = threading.Thread(
            target=lambda: results.append(GatewayClient(gateway.url).charge(PARAMS, "k").status)
        )
        slow.start()
        time.sleep(0.3)  # the first request is inside its 800 ms delay
        concurrent = GatewayClient(gateway.url).charge(PARAMS, "k")
        slow.join()
        assert concurrent.status == 409
        assert concurrent.body["error"]["code"] == "idempotency_key_in_use"
        assert results == [200]
        after = GatewayClient(gateway.url).charge(PARAMS, "k")
        assert after.status == 200 and after.replayed
        assert len(GatewayClient(gateway.url).charges()) == 1


def test_keys_expire_after_the_ttl(tmp_path: Path) -> None:
    now = [1_000_000]
    ttl_ms = 24 * 3600 * 1000
    database = SQLiteDatabase(str(tmp_path / "gw.db"))
    with Gateway(database, ttl_ms=ttl_ms, clock_ms=lambda: now[0]) as gateway:
        client = GatewayClient(gateway.url)
        assert client.charge(PARAMS, "pay_abc").status == 200
        now[0] += ttl_ms - 1
        assert client.charge(PARAMS, "pay_abc").replayed  # 1 ms short of 24 h: still kept
        now[0] += 1
        fresh = client.charge(PARAMS, "pay_abc")
        assert fresh.status == 200 and not fresh.replayed  # pruned: a new request
        assert len(client.charges()) == 2
        assert gateway.state.prune() == 0
        now[0] += ttl_ms
        assert gateway.state.prune() == 1


def test_timeout_after_charge_charges_and_the_retry_replays(tmp_path: Path) -> None:
    faults = GatewayFaults(first_at={GatewayFault.TIMEOUT_AFTER_CHARGE: 1}, hang_s=1.0)
    with Gateway(SQLiteDatabase(str(tmp_path / "gw.db")), faults=faults) as gateway:
        client = GatewayClient(gateway.url, timeout_s=0.3)
        with pytest.raises(GatewayUnreachable):
            client.charge(PARAMS, "pay_abc")
        assert len(client.charges()) == 1  # charged, though the client never heard
        retry = client.charge(PARAMS, "pay_abc")
        assert retry.status == 200 and retry.replayed
        assert len(client.charges()) == 1
        assert faults.counts()["timeout_after_charge"] == 1


def test_fail_before_charge_is_not_stored(tmp_path: Path) -> None:
    faults = GatewayFaults(first_at={GatewayFault.FAIL_BEFORE_CHARGE: 1})
    with Gateway(SQLiteDatabase(str(tmp_path / "gw.db")), faults=faults) as gateway:
        client = GatewayClient(gateway.url)
        assert client.charge(PARAMS, "pay_abc").status == 503
        assert client.charges() == []
        retry = client.charge(PARAMS, "pay_abc")
        assert retry.status == 200 and not retry.replayed
        assert client.faults()["fail_before_charge"] == 1


def test_fault_decisions_are_seeded() -> None:
    def decisions(seed: int) -> list[GatewayFault]:
        faults = GatewayFaults(
            seed,
            fail_before_charge_probability=0.2,
            timeout_after_charge_probability=0.2,
            slow_probability=0.2,
        )
        return [faults.decide().fault for _ in range(200)]

    assert decisions(3) == decisions(3)
    assert decisions(3) != decisions(4)
    assert set(decisions(3)) == set(GatewayFault)


def test_gateway_state_in_postgresql() -> None:
    """The same semantics with the gateway's state in the real PostgreSQL server."""
    import uuid

    from effects.conftest import postgres_or_skip
    from samsa.effects.db import PostgresDatabase

    url = postgres_or_skip()
    schema = f"samsa_gw_test_{uuid.uuid4().hex[:8]}"
    database = PostgresDatabase(url, schema)
    try:
        with Gateway(database) as gateway:
            client = GatewayClient(gateway.url)
            first = client.charge(PARAMS, "pay_pg")
            replay = client.charge(PARAMS, "pay_pg")
            mismatch = client.charge({**PARAMS, "amount": 1}, "pay_pg")
            declined = client.charge({**PARAMS, "card": DECLINED_CARD}, "pay_pg_declined")
            declined_again = client.charge({**PARAMS, "card": DECLINED_CARD}, "pay_pg_declined")
            assert (first.status, replay.status, replay.replayed) == (200, 200, True)
            assert replay.body == first.body
            assert mismatch.status == 422
            assert (declined.status, declined_again.status, declined_again.replayed) == (
                402,
                402,
                True,
            )
            assert len(client.charges()) == 1
    finally:
        database.close()
        cleanup = PostgresDatabase(url)
        with cleanup.transaction() as tx:
            tx.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        cleanup.close()
