"""`python -m samsa.bench.txn_cpu` runs whole transactions through the broker: each one's
commit marker is written and its records become readable (a benchmark that measured refused
requests would measure nothing)."""

from __future__ import annotations

import pytest

from samsa.bench.txn_cpu import TOPIC, Bench


@pytest.mark.parametrize("fsync", [False, True])
def test_each_transaction_commits_its_record(tmp_path: object, fsync: bool) -> None:
    bench = Bench(str(tmp_path), fsync)
    try:
        bench.seconds(5)
        log = bench.broker.topics.partition(TOPIC, 0)
        assert log is not None
        assert log.log_end_offset == 10  # five records, five COMMIT markers
        assert log.last_stable_offset == log.high_watermark == 10
    finally:
        bench.broker.close()
