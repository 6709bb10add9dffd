"""The durability driver, one event at a time: register continuations, report fsyncs, and check
what is dirty, waiting, ready and finished after each (samsa.durability.driver)."""

from __future__ import annotations

from typing import Any

import pytest

from samsa.durability import ContinuationFailed, Driver, Durable, Failed, Later, Slot, gather
from samsa.durability.inline import settle, sync_log, sync_logs
from samsa.log.partition import LogConfig, PartitionLog, StorageError
from samsa.protocol.batch import parse_header
from samsa.sim.clients import batch
from samsa.sim.disk import SimDisk


def _log(disk: SimDisk, partition: int) -> PartitionLog:
    return PartitionLog.open(disk, f"/d/t-{partition}", "t", partition, LogConfig(), 0, False)


def _write(log: PartitionLog) -> int:
    """Append one record; the offset a wait for it names (the log end after it)."""
    data = batch([b"v"], -1, -1, -1, False, 0)
    log.append(data, parse_header(data), 0)
    return log.log_end_offset


@pytest.fixture
def logs() -> tuple[PartitionLog, PartitionLog]:
    disk = SimDisk()
    return _log(disk, 0), _log(disk, 1)


def _sync(driver: Driver[Any], log: PartitionLog, fail: bool = False) -> None:
    point, failed = sync_log(log, fail)
    driver.synced(log, point, failed)


def _record(calls: list[Failed], value: Any) -> Any:
    def then(failed: Failed) -> Any:
        calls.append(failed)
        return value

    return then


def test_a_wait_the_round_under_way_covers_starts_no_other_round(
    logs: tuple[PartitionLog, PartitionLog],
) -> None:
    """A wait registered while an fsync of its log is under way, for an offset written before
    that fsync began (a produce held for a coordinator record being made durable), is finished
    by that fsync: no further round is asked for. Later writes still are."""
    log, _ = logs
    driver: Driver[str] = Driver()
    offset = _write(log)
    point = log.sync_point()  # the round under way: taken before the wait is registered
    driver.respond("covered", [(log, offset)], _record([], "covered"))
    assert driver.take_dirty() == []
    driver.respond("later", [(log, _write(log))], _record([], "later"))
    assert driver.take_dirty() == [log]
    point.run()
    log.complete_sync(point)
    driver.synced(log, point)
    assert driver.run() == [("covered", "covered")]
    _sync(driver, log)
    assert driver.run() == [("later", "later")]


def test_a_response_waits_for_its_fsync(logs: tuple[PartitionLog, PartitionLog]) -> None:
    log, _ = logs
    driver: Driver[str] = Driver()
    calls: list[Failed] = []
    driver.respond("produce", [(log, _write(log))], _record(calls, "payload"))
    assert (driver.waiting, driver.ready, driver.run()) == (1, 0, [])
    assert driver.take_dirty() == [log]
    assert driver.take_dirty() == []
    _sync(driver, log)
    assert (driver.waiting, driver.ready, calls) == (0, 1, [])
    assert driver.run() == [("produce", "payload")]
    assert calls == [set()]
    assert driver.run() == []


def test_writes_already_durable_are_ready_at_once(logs: tuple[PartitionLog, PartitionLog]) -> None:
    log, _ = logs
    end = _write(log)
    sync_log(log)
    driver: Driver[str] = Driver()
    driver.respond("retry", [(log, end)], _record([], "same offsets"))
    driver.respond("empty", [], _record([], "nothing to wait for"))
    assert (driver.dirty, driver.ready) == (False, 2)
    assert driver.run() == [("retry", "same offsets"), ("empty", "nothing to wait for")]


def test_a_sync_taken_before_the_write_does_not_cover_it(
    logs: tuple[PartitionLog, PartitionLog],
) -> None:
    log, _ = logs
    _write(log)
    point = log.sync_point()  # a round starts...
    driver: Driver[str] = Driver()
    driver.respond("late", [(log, _write(log))], _record([], "ok"))  # ...this write misses it
    point.run()
    log.complete_sync(point)
    driver.synced(log, point)
    assert (driver.waiting, driver.ready, driver.take_dirty()) == (1, 0, [log])
    _sync(driver, log)
    assert driver.run() == [("late", "ok")]


def test_a_failed_fsync_reaches_the_continuation(logs: tuple[PartitionLog, PartitionLog]) -> None:
    good, bad = logs
    driver: Driver[str] = Driver()
    calls: list[Failed] = []
    driver.respond("both", [(good, _write(good)), (bad, _write(bad))], _record(calls, "p"))
    _sync(driver, good)
    assert (driver.waiting, driver.ready) == (1, 0)  # one log still to go
    _sync(driver, bad, fail=True)
    assert bad.sync_failed and bad.high_watermark == 0
    assert driver.run() == [("both", "p")]
    assert calls == [{bad}]


def test_after_a_failed_fsync_later_writes_fail_too(
    logs: tuple[PartitionLog, PartitionLog],
) -> None:
    log, _ = logs
    driver: Driver[str] = Driver()
    calls: list[Failed] = []
    driver.respond("first", [(log, _write(log))], _record(calls, 1))
    _sync(driver, log, fail=True)
    assert driver.run() == [("first", 1)]
    assert calls == [{log}]
    # The log is offline: it never trusts its syncs again, and refuses writes until a restart.
    assert log.offline is not None
    with pytest.raises(StorageError):
        _write(log)
    assert log.high_watermark == 0


def test_a_chained_durable_waits_again(logs: tuple[PartitionLog, PartitionLog]) -> None:
    first, second = logs
    driver: Driver[str] = Driver()
    calls: list[Failed] = []

    def prepare(failed: Failed) -> Durable[str]:
        calls.append(failed)
        return Durable([(second, _write(second))], _record(calls, "complete"))

    driver.respond("end_txn", [(first, _write(first))], prepare)
    _sync(driver, first)
    assert driver.run() == []  # prepare ran and asked for another write
    assert (driver.waiting, driver.take_dirty()) == (1, [first, second])
    _sync(driver, second, fail=True)
    assert driver.run() == [("end_txn", "complete")]
    assert calls == [set(), {second}]


def test_gather_answers_once_every_step_and_its_chain_is_done(
    logs: tuple[PartitionLog, PartitionLog],
) -> None:
    """One response for several steps (a WriteTxnMarkers naming several partitions): each
    step sees only its own failed logs, and a step that chains is waited for again."""
    good, bad = logs
    driver: Driver[str] = Driver()
    calls: list[Failed] = []

    def prepare(failed: Failed) -> Durable[str]:
        calls.append(failed)
        return Durable([(good, _write(good))], _record(calls, "chained"))

    steps: dict[str, Durable[str]] = {
        "plain": Durable([(good, _write(good))], _record(calls, "plain")),
        "failing": Durable([(bad, _write(bad))], _record(calls, "failing")),
        "chain": Durable([(good, good.log_end_offset)], prepare),
    }
    gathered = gather(steps)
    driver.respond("markers", gathered.waits, gathered.then)
    _sync(driver, good)
    _sync(driver, bad, fail=True)
    assert driver.run() == []  # the chained step asked for another write
    assert calls == [set(), {bad}, set()]
    _sync(driver, good)
    assert driver.run() == [
        ("markers", {"plain": "plain", "failing": "failing", "chain": "chained"})
    ]
    assert calls[-1] == set()


def test_background_work_runs_and_chains(logs: tuple[PartitionLog, PartitionLog]) -> None:
    log, _ = logs
    queued: list[Later] = []
    steps: list[str] = []

    def take() -> list[Later]:
        work, queued[:] = list(queued), []
        return work

    def complete(failed: Failed) -> None:
        steps.append("complete")

    def markers(failed: Failed) -> Later:
        steps.append("markers")
        return Later([(log, _write(log))], complete)

    driver: Driver[str] = Driver(take)
    queued.append(Later([(log, _write(log))], markers))
    assert (driver.run(), driver.background) == ([], 1)
    _sync(driver, log)
    driver.run()
    assert (steps, driver.background, driver.background_runs) == (["markers"], 1, 1)
    _sync(driver, log)
    driver.run()
    assert (steps, driver.background, driver.background_runs) == (["markers", "complete"], 0, 2)


def test_a_slot_answers_when_resolved(logs: tuple[PartitionLog, PartitionLog]) -> None:
    log, _ = logs
    driver: Driver[str] = Driver()
    join, sync = Slot(), Slot()
    driver.slot("join", join)
    driver.slot("sync", sync)
    assert driver.run() == []
    join.resolve("joined")
    sync.resolve(Durable([(log, _write(log))], _record([], "assigned")))
    assert driver.run() == [("join", "joined")]
    _sync(driver, log)
    assert driver.run() == [("sync", "assigned")]


def test_a_failing_continuation_is_reported_and_the_rest_runs(
    logs: tuple[PartitionLog, PartitionLog],
) -> None:
    log, _ = logs
    driver: Driver[str] = Driver()

    def broken(failed: Failed) -> Any:
        raise ValueError("bug")

    end = _write(log)
    driver.respond("broken", [(log, end)], broken)
    driver.respond("fine", [(log, end)], _record([], "ok"))
    _sync(driver, log)
    with pytest.raises(ContinuationFailed) as raised:
        driver.run()
    assert raised.value.key == "broken" and isinstance(raised.value.__cause__, ValueError)
    assert driver.run() == [("fine", "ok")]


def test_make_durable_only_marks_the_log(logs: tuple[PartitionLog, PartitionLog]) -> None:
    log, other = logs
    driver: Driver[str] = Driver()
    driver.make_durable([(log, _write(log)), (other, 0)])
    assert (driver.take_dirty(), driver.waiting, driver.ready) == ([log], 0, 0)


def test_settle_and_sync_logs(logs: tuple[PartitionLog, PartitionLog]) -> None:
    log, other = logs
    driver: Driver[str] = Driver()
    calls: list[Failed] = []
    result: Durable[str] = Durable([(log, _write(log))], _record(calls, "value"))
    assert settle(driver, result) == "value"
    assert settle(driver, "plain") == "plain"
    driver.respond("x", [(other, _write(other))], _record(calls, "x"))
    assert sync_logs(driver, [log, other], failing={other}) == {other}
    assert driver.run() == [("x", "x")]
    assert calls == [set(), {other}]


def test_a_wait_that_can_never_be_met_fails_at_once(
    logs: tuple[PartitionLog, PartitionLog],
) -> None:
    """A refused write the log undid leaves the wait's offset past the log end; an offline log
    never becomes durable. Neither may hang its response (nor ask for an fsync)."""
    refused, offline = logs
    _write(offline)
    offline.go_offline("a test")
    driver: Driver[str] = Driver()
    calls: list[Failed] = []
    driver.respond("refused", [(refused, refused.log_end_offset + 1)], _record(calls, 1))
    driver.respond("offline", [(offline, offline.log_end_offset)], _record(calls, 2))
    assert (driver.dirty, driver.waiting) == (False, 0)
    assert driver.run() == [("refused", 1), ("offline", 2)]
    assert calls == [{refused}, {offline}]


def test_a_failed_sync_fails_waits_for_later_writes_too(
    logs: tuple[PartitionLog, PartitionLog],
) -> None:
    """Written after the point the failed round covered, but before it ended: the log is
    offline from then on, so that wait can never be met either."""
    log, _ = logs
    driver: Driver[str] = Driver()
    calls: list[Failed] = []
    point = log.sync_point()
    driver.respond("later", [(log, _write(log))], _record(calls, "refused"))
    log.fail_sync(point)
    driver.synced(log, point, failed=True)
    assert driver.run() == [("later", "refused")]
    assert calls == [{log}]
