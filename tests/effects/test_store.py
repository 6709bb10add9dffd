"""The dedup store on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter

import pytest

from samsa.effects import ClaimLost, ClaimStatus, DedupStore, Tx, open_database

from .conftest import Databases


class Clock:
    def __init__(self) -> None:
        self.now_ms = 1_000_000

    def __call__(self) -> int:
        return self.now_ms


def test_claim_record_then_done(databases: Databases) -> None:
    store = DedupStore(databases.open())
    claim = store.claim("pay_abc", "c1")
    assert (claim.status, claim.attempt, claim.takeover) == (ClaimStatus.CLAIMED, 1, False)
    store.record("pay_abc", "c1", claim.attempt, {"charge_id": "ch_1"})
    again = store.claim("pay_abc", "c2")
    assert again.status is ClaimStatus.DONE
    assert again.outcome == {"charge_id": "ch_1"}
    assert store.claim("pay_abc", "c1").status is ClaimStatus.DONE


def test_another_owner_is_busy_until_the_lease_runs_out(databases: Databases) -> None:
    clock = Clock()
    store = DedupStore(databases.open(), clock_ms=clock)
    first = store.claim("k", "c1", lease_ms=5_000)
    busy = store.claim("k", "c2", lease_ms=5_000)
    assert (busy.status, busy.owner) == (ClaimStatus.BUSY, "c1")
    clock.now_ms += 5_000
    takeover = store.claim("k", "c2", lease_ms=5_000)
    assert takeover.status is ClaimStatus.CLAIMED and takeover.takeover
    # The first owner is fenced: its late record is refused and writes nothing.
    with pytest.raises(ClaimLost):
        store.record("k", "c1", first.attempt, {"by": "c1"})
    store.record("k", "c2", takeover.attempt, {"by": "c2"})
    assert store.claim("k", "c3").outcome == {"by": "c2"}


def test_the_same_owner_takes_its_own_claim_over_at_once(databases: Databases) -> None:
    store = DedupStore(databases.open())
    first = store.claim("k", "worker-0", lease_ms=60_000)
    restarted = store.claim("k", "worker-0", lease_ms=60_000)  # after a kill -9
    assert restarted.status is ClaimStatus.CLAIMED and restarted.attempt == first.attempt + 1
    with pytest.raises(ClaimLost):  # the previous incarnation, if it were still alive
        store.record("k", "worker-0", first.attempt, {})


def test_release_lets_anyone_claim(databases: Databases) -> None:
    store = DedupStore(databases.open())
    claim = store.claim("k", "c1", lease_ms=60_000)
    assert store.release("k", "c1", claim.attempt)
    assert store.claim("k", "c2").status is ClaimStatus.CLAIMED
    assert not store.release("k", "c1", claim.attempt)


def test_record_runs_the_callers_writes_in_the_same_transaction(databases: Databases) -> None:
    database = databases.open()
    store = DedupStore(database)
    with database.transaction() as tx:
        tx.execute("CREATE TABLE effects_log (k TEXT)")
    claim = store.claim("k", "c1")

    def failing(tx: object) -> None:
        raise RuntimeError("the ledger write failed")

    with pytest.raises(RuntimeError):
        store.record("k", "c1", claim.attempt, {}, also=failing)
    state = store.get("k")
    assert state is not None and state.status is ClaimStatus.BUSY  # not recorded: still claimed

    def log_effect(tx: Tx) -> None:
        tx.execute("INSERT INTO effects_log VALUES ('k')")

    store.record("k", "c1", claim.attempt, {}, also=log_effect)
    with database.transaction() as tx:
        assert tx.fetchall("SELECT k FROM effects_log") == [("k",)]


def test_retention_is_bounded(databases: Databases) -> None:
    clock = Clock()
    store = DedupStore(databases.open(), retention_ms=10_000, clock_ms=clock)
    for key in ("old", "new"):
        claim = store.claim(key, "c1")
        store.record(key, "c1", claim.attempt, {})
        clock.now_ms += 6_000
    unfinished = store.claim("running", "c1")
    clock.now_ms -= 2_000  # old recorded 10 s ago, new 4 s ago: both kept
    assert store.prune() == 0
    clock.now_ms += 2_000  # old: 12 s, new: 6 s
    assert store.prune() == 1
    assert store.count() == 2
    clock.now_ms += 5_000  # new: 11 s
    assert store.prune() == 1
    assert store.count() == 1  # a claim still running is never pruned
    assert store.claim("old", "c2").status is ClaimStatus.CLAIMED  # forgotten: new again
    assert unfinished.status is ClaimStatus.CLAIMED


def test_two_consumers_racing_on_one_key_threads(databases: Databases) -> None:
    """Many rounds of two threads, each with its own connection, claiming the same key at the
    same moment: exactly one claims it each round."""
    stores = [DedupStore(databases.open()), DedupStore(databases.open())]
    rounds = 40
    wins: Counter[str] = Counter()
    barrier = threading.Barrier(2)
    lock = threading.Lock()

    def racer(name: str, store: DedupStore) -> None:
        for i in range(rounds):
            barrier.wait()
            claim = store.claim(f"race-{i}", name)
            if claim.status is ClaimStatus.CLAIMED:
                with lock:
                    wins[f"race-{i}"] += 1
                store.record(f"race-{i}", name, claim.attempt, {"winner": name})

    threads = [threading.Thread(target=racer, args=(f"c{n}", s)) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wins == Counter({f"race-{i}": 1 for i in range(rounds)})


def _claim_in_process(url: str, schema: str | None, name: str, keys: int, out: object) -> None:
    store = DedupStore(open_database(url, schema))
    won = [i for i in range(keys) if store.claim(f"p-{i}", name).status is ClaimStatus.CLAIMED]
    out.put((name, won))  # type: ignore[attr-defined]


def test_two_consumers_racing_on_one_key_processes(databases: Databases) -> None:
    """Two processes claim the same 200 keys in the same order: every key is won exactly once."""
    DedupStore(databases.open())  # create the table before the race
    schema = databases.schema if databases.kind == "postgres" else None
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    keys = 200
    processes = [
        context.Process(
            target=_claim_in_process, args=(databases.url, schema, f"p{n}", keys, queue)
        )
        for n in range(2)
    ]
    for process in processes:
        process.start()
    results = dict(queue.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(30)
    won = Counter(results["p0"] + results["p1"])
    assert sorted(won) == list(range(keys))
    assert set(won.values()) == {1}
