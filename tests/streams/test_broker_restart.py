"""The balances example under exactly_once while its broker, a `samsa serve` process, is
kill -9'd and restarted twice. The workers (confluent-kafka) ride out each outage on their own:
open transactions are aborted or time out, the group rebalances, and processing resumes at the
committed offsets. At the end the outputs and the changelog are exactly those of one
failure-free pass, and every worker exits cleanly on SIGTERM (none hung in a client call)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from samsa.testing.process import BrokerProcess

from . import support
from .support import Backend, WorkerProcess

SEED = 20261129
RECORDS = 4000
RATE_PER_S = 400.0
ACCOUNTS = 25
WORKERS = 2
KILLS = 2
RUN_BEFORE_KILL_S = 3.0


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    process = BrokerProcess(str(tmp_path / "data"), ["num.partitions=3"])
    try:
        yield process.start()
    finally:
        process.kill9()


def test_exactly_once_rides_out_broker_kill9(broker: BrokerProcess) -> None:
    backend = Backend("samsa-process", broker.bootstrap, 3, True)
    inputs = support.make_inputs(RECORDS, ACCOUNTS, SEED)
    backend.create_input()
    log_dir = support.temp_log_dir()
    workers = [
        WorkerProcess(backend, "exactly_once", str(i), static=True, log_dir=log_dir)
        for i in range(WORKERS)
    ]
    producer = support.InputProducer(backend.bootstrap, inputs, RATE_PER_S)
    producer.start()
    time.sleep(0.5)
    for worker in workers:
        worker.start()
    try:
        for _ in range(KILLS):
            support.wait_outputs(backend, 1, timeout_s=30)
            time.sleep(RUN_BEFORE_KILL_S)
            broker.kill9()
            broker.start()
        producer.finish()
        support.wait_caught_up(backend, workers, timeout_s=120)
        restarts = sum(w.starts for w in workers) - WORKERS
        codes = [w.terminate() for w in workers]
    finally:
        for worker in workers:
            worker.kill9()
    assert broker.starts == KILLS + 1
    # No worker died on the way (wait_caught_up restarts dead ones): they recovered in-process.
    assert restarts == 0, f"{restarts} worker restarts; logs in {log_dir}"
    assert codes == [0] * WORKERS, f"clean SIGTERM exits expected; logs in {log_dir}"
    want = support.expected_outputs(inputs)
    got = support.outputs_by_account(backend.bootstrap, "read_committed")
    assert got == want, support.diff_summary(got, want)
    final = {account: seq[-1][1] for account, seq in want.items()}
    assert support.changelog_state(backend.bootstrap, "read_committed") == final
