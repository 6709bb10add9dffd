"""The checker on hand-built histories: a clean one passes, and each anomaly is caught, by its
own class only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from samsa.verify import checker
from samsa.verify.history import COMMITTED, OK, UNCOMMITTED, UNKNOWN, History, Op, load

P0 = "in:0"
P1 = "in:1"


class Builder:
    """A history, op by op, with a clock that moves one second per op."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def add(self, kind: str, process: str, outcome: str = OK, **fields: Any) -> Op:
        t = float(len(self.ops))
        op = Op(len(self.ops), kind, process, outcome, fields.pop("start", t), t, **fields)
        self.ops.append(op)
        return op

    def send(
        self,
        value: str,
        partition: str,
        offset: int | None,
        txn: str | None = None,
        process: str = "p",
        seq: int | None = None,
        outcome: str = OK,
    ) -> Op:
        return self.add(
            "send",
            process,
            outcome,
            value=value,
            partition=partition,
            offset=offset,
            txn=txn,
            seq=seq if seq is not None else len(self.ops),
        )

    def txn(self, name: str, action: str, outcome: str = OK, process: str = "p") -> Op:
        return self.add("txn", process, outcome, txn=name, action=action)

    def poll(
        self, process: str, reads: list[tuple[str, int, str]], isolation: str = COMMITTED
    ) -> Op:
        return self.add("poll", process, isolation=isolation, reads=reads)

    def assign(self, process: str, offsets: dict[str, int]) -> Op:
        return self.add("assign", process, offsets=offsets)

    def final(
        self,
        committed: list[tuple[str, int, str]],
        uncommitted: list[tuple[str, int, str]] | None = None,
    ) -> None:
        self.add("final-read", "final", isolation=COMMITTED, reads=committed)
        self.add(
            "final-read",
            "final",
            isolation=UNCOMMITTED,
            reads=uncommitted if uncommitted is not None else committed,
        )

    def check(self) -> dict[str, int]:
        return {k: v for k, v in checker.check(self.ops).counts().items() if v}


def clean() -> Builder:
    """Two committed transactions, an aborted one, an idempotent send, read by everyone."""
    h = Builder()
    h.assign("c", {P0: 0, P1: 0})
    h.send("a", P0, 0, txn="t1")
    h.send("b", P1, 0, txn="t1")
    h.txn("t1", "commit")
    h.send("x", P0, 2, txn="t2")  # offset 1 is t1's marker
    h.txn("t2", "abort")
    h.send("i", P0, 4, process="idem")
    h.send("c", P1, 2, txn="t3")
    h.txn("t3", "commit")
    h.poll("c", [(P0, 0, "a"), (P1, 0, "b"), (P0, 4, "i"), (P1, 2, "c")])
    h.poll("u", [(P0, 0, "a"), (P0, 2, "x"), (P0, 4, "i")], isolation=UNCOMMITTED)
    h.final(
        [(P0, 0, "a"), (P0, 4, "i"), (P1, 0, "b"), (P1, 2, "c")],
        [(P0, 0, "a"), (P0, 2, "x"), (P0, 4, "i"), (P1, 0, "b"), (P1, 2, "c")],
    )
    return h


def test_a_clean_history_has_no_anomaly() -> None:
    assert clean().check() == {}


def test_every_class_is_counted_even_at_zero() -> None:
    counts = checker.check(clean().ops).counts()
    assert set(counts) == set(checker.CLASSES)
    assert set(counts.values()) == {0}


def test_lost_write() -> None:
    h = Builder()
    h.send("a", P0, 0)
    h.send("b", P0, 1)
    h.poll("c", [(P0, 0, "a")])
    h.final([(P0, 0, "a")])
    assert h.check() == {checker.LOST_WRITE: 1}


def test_committed_transaction_missing_is_a_lost_write() -> None:
    h = Builder()
    h.send("a", P0, 0, txn="t")
    h.txn("t", "commit")
    h.final([])
    assert h.check() == {checker.LOST_WRITE: 1}


def test_unknown_sends_may_be_missing() -> None:
    h = Builder()
    h.send("a", P0, None, outcome=UNKNOWN)
    h.send("b", P0, 0, txn="t")
    h.txn("t", "commit", outcome=UNKNOWN)
    h.final([])
    assert h.check() == {}


def test_unseen() -> None:
    h = Builder()
    h.send("a", P0, 0)
    h.final([(P0, 0, "a")])
    assert h.check() == {checker.UNSEEN: 1}


def test_duplicate() -> None:
    h = Builder()
    h.send("a", P0, 0)
    h.poll("c", [(P0, 0, "a")])
    h.poll("d", [(P0, 1, "a")])
    h.final([(P0, 0, "a"), (P0, 1, "a")])
    assert h.check() == {checker.DUPLICATE: 1}


def test_inconsistent_offsets() -> None:
    h = Builder()
    h.send("a", P0, 0)
    h.send("b", P0, 0)  # acknowledged at the same offset
    h.poll("c", [(P0, 0, "a")])
    h.final([(P0, 0, "a")])
    counts = h.check()
    assert counts[checker.INCONSISTENT_OFFSETS] == 1
    assert checker.DUPLICATE not in counts


def test_aborted_read() -> None:
    h = Builder()
    h.send("a", P0, 0, txn="t")
    h.txn("t", "abort")
    h.poll("c", [(P0, 0, "a")], isolation=COMMITTED)
    h.final([], [(P0, 0, "a")])
    assert h.check() == {checker.ABORTED_READ: 1}


def test_read_uncommitted_may_see_aborted_values() -> None:
    h = Builder()
    h.send("a", P0, 0, txn="t")
    h.txn("t", "abort")
    h.poll("u", [(P0, 0, "a")], isolation=UNCOMMITTED)
    h.final([], [(P0, 0, "a")])
    assert h.check() == {}


def test_a_crashed_clients_transaction_is_aborted() -> None:
    h = Builder()
    h.send("a", P0, 0, txn="t")
    h.txn("t", "crash")  # the successor's init_transactions fenced it
    h.final([(P0, 0, "a")])
    counts = h.check()
    assert counts[checker.ABORTED_READ] == 1


def test_read_past_the_lso() -> None:
    h = Builder()
    h.send("a", P0, 0, txn="t")
    h.poll("c", [(P0, 0, "a")])  # before the commit was even sent
    h.txn("t", "commit")
    h.final([(P0, 0, "a")])
    assert h.check() == {checker.LSO_READ: 1}


def test_non_atomic_transaction() -> None:
    h = Builder()
    h.send("a", P0, 0, txn="t")
    h.send("b", P1, 0, txn="t")
    h.txn("t", "commit", outcome=UNKNOWN)
    h.poll("c", [(P0, 0, "a")])
    h.final([(P0, 0, "a")], [(P0, 0, "a"), (P1, 0, "b")])
    assert h.check() == {checker.NON_ATOMIC_TXN: 1}


def test_intermediate_read() -> None:
    h = Builder()
    h.assign("c", {P0: 0})
    h.send("a", P0, 0, txn="t")
    h.send("b", P0, 1, txn="t")
    h.send("i", P0, 3)
    h.txn("t", "commit")
    h.poll("c", [(P0, 0, "a")])
    h.poll("c", [(P0, 3, "i")])  # jumped over b, the rest of t
    h.final([(P0, 0, "a"), (P0, 1, "b"), (P0, 3, "i")])
    counts = h.check()
    assert counts[checker.INTERMEDIATE_READ] == 1
    assert counts[checker.POLL_SKIP] == 1


def test_nonmonotonic_send() -> None:
    h = Builder()
    h.send("a", P0, 5, seq=0)
    h.send("b", P0, 3, seq=1)
    h.poll("c", [(P0, 3, "b"), (P0, 5, "a")])
    h.final([(P0, 3, "b"), (P0, 5, "a")])
    assert h.check() == {checker.NONMONOTONIC_SEND: 1}


def test_nonmonotonic_poll_and_a_seek_allows_it() -> None:
    h = Builder()
    h.send("a", P0, 0)
    h.send("b", P0, 1)
    h.poll("c", [(P0, 0, "a"), (P0, 1, "b")])
    h.poll("c", [(P0, 0, "a")])
    h.final([(P0, 0, "a"), (P0, 1, "b")])
    assert h.check() == {checker.NONMONOTONIC_POLL: 1}
    sought = Builder()
    sought.send("a", P0, 0)
    sought.send("b", P0, 1)
    sought.poll("c", [(P0, 0, "a"), (P0, 1, "b")])
    sought.add("seek", "c", offsets={P0: 0})
    sought.poll("c", [(P0, 0, "a")])
    sought.final([(P0, 0, "a"), (P0, 1, "b")])
    assert sought.check() == {}


def test_poll_skip_from_a_known_start() -> None:
    h = Builder()
    h.assign("c", {P0: 0})
    h.send("a", P0, 0)
    h.send("b", P0, 1)
    h.poll("c", [(P0, 1, "b")])
    h.poll("d", [(P0, 0, "a")])
    h.final([(P0, 0, "a"), (P0, 1, "b")])
    assert h.check() == {checker.POLL_SKIP: 1}


def test_poll_skip_over_aborted_values_is_fine_at_read_committed() -> None:
    h = Builder()
    h.send("a", P0, 0)
    h.send("x", P0, 1, txn="t")
    h.txn("t", "abort")
    h.send("b", P0, 3)
    h.poll("c", [(P0, 0, "a"), (P0, 3, "b")])
    h.final([(P0, 0, "a"), (P0, 3, "b")], [(P0, 0, "a"), (P0, 1, "x"), (P0, 3, "b")])
    assert h.check() == {}
    h.poll("u", [(P0, 0, "a"), (P0, 3, "b")], isolation=UNCOMMITTED)
    assert h.check() == {checker.POLL_SKIP: 1}


def test_copies() -> None:
    h = Builder()
    h.send("a", P0, 0)
    h.send("b", P0, 1)
    h.poll("c", [(P0, 0, "a"), (P0, 1, "b"), ("out:0", 0, "a|t.0"), ("out:0", 1, "a|u.0")])
    h.add("group-offsets", "final", offsets={P0: 2})
    h.final([(P0, 0, "a"), (P0, 1, "b"), ("out:0", 0, "a|t.0"), ("out:0", 1, "a|u.0")])
    assert h.check() == {checker.COPY_LOST: 1, checker.COPY_DUPLICATE: 1}


def test_history_round_trips_through_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    history = History(path)
    start = history.now()
    history.record("poll", "c", OK, start, isolation=COMMITTED, reads=[(P0, 0, "a")])
    history.record("send", "p", OK, start, value="a", partition=P0, offset=0, seq=0)
    history.close()
    ops = load(path)
    assert ops == history.ops
    assert ops[0].reads == [(P0, 0, "a")]
