"""A checker is trusted only if it catches planted bugs: each test breaks the embedded broker in
one way (by monkeypatching it, in the test only) and a short verify run must report the
matching anomaly."""

from __future__ import annotations

from typing import Any

import pytest

from samsa.log.partition import PartitionLog
from samsa.protocol.apis import ApiKey
from samsa.state.producers import Append, Duplicate, ProducerStateManager
from samsa.verify import checker, runner
from samsa.verify.faults import CUT, LOST_ACK

pytestmark = pytest.mark.interop

SMALL = {
    "txn_producers": 2,
    "idempotent_producers": 2,
    "copiers": 1,
    "consumers": (("committed", "assign"), ("uncommitted", "assign")),
}


def verify(faults: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    options = runner.Options(
        duration_s=6.0,
        seed=7,
        faults=faults,
        fault_interval_s=0.4,
        target=runner.EMBEDDED,
        workload=SMALL,
        **extra,
    )
    report = runner.run(options)
    print(runner.table(report))
    return report


def test_the_unbroken_embedded_broker_passes() -> None:
    # Not the group coordinator's apis: a lost response there can wedge librdkafka's
    # send_offsets_to_transaction (confluentinc/librdkafka#5456), which costs a test 15 s.
    report = verify((LOST_ACK, CUT), fault_apis=(ApiKey.PRODUCE, ApiKey.FETCH, ApiKey.END_TXN))
    assert report["anomalies"] == {kind: 0 for kind in checker.CLASSES}
    assert report["faults"][LOST_ACK] > 0


def test_skipped_dedup_shows_as_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    check = ProducerStateManager.check

    def no_dedup(self: ProducerStateManager, header: Any, coordinator: bool = False) -> Any:
        verdict = check(self, header, coordinator)
        return Append() if isinstance(verdict, Duplicate) else verdict

    monkeypatch.setattr(ProducerStateManager, "check", no_dedup)
    report = verify((LOST_ACK,), fault_apis=(ApiKey.PRODUCE,))
    assert report["anomalies"][checker.DUPLICATE] > 0


def test_serving_past_the_lso_shows_as_uncommitted_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        PartitionLog, "last_stable_offset", property(lambda self: self.high_watermark)
    )
    report = verify()
    anomalies = report["anomalies"]
    assert anomalies[checker.ABORTED_READ] + anomalies[checker.LSO_READ] > 0


def test_a_lost_aborted_index_shows_as_aborted_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PartitionLog, "aborted_transactions", lambda self, start, end: [])
    report = verify()
    assert report["anomalies"][checker.ABORTED_READ] > 0
