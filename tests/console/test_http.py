"""Every view of the console over HTTP, against a real broker holding `samsa.console.example`'s
log: committed, aborted and open transactions, a fenced producer, a group with lag."""

from __future__ import annotations

import re
import threading
import time
import urllib.request

import confluent_kafka
import pytest

from samsa.console import example
from samsa.console.server import ConsoleServer, ConsoleSettings
from samsa.testing.embedded import EmbeddedBroker

from .conftest import TEST_POLL_INTERVAL_S, TEST_REQUESTS_PER_S
from .pages import (
    batch_kinds,
    get,
    markers,
    post,
    reader_offsets,
    text,
    timeline_order,
)

# The example's orders-0, offset by offset (see samsa.console.example).
EXPECTED_KINDS = {
    0: "plain",
    2: "idempotent",
    5: "committed",
    8: "commit-marker",
    9: "aborted",
    11: "abort-marker",
    12: "aborted",  # the zombie's, aborted by the coordinator when it was fenced
    14: "abort-marker",
    15: "committed",
    16: "commit-marker",
    17: "open",
}


def test_overview_lists_partitions_with_what_open_transactions_hold(
    console: ConsoleServer,
) -> None:
    got = get(console.url, "/")
    assert got.status == 200
    words = text(got.body)
    assert "orders 0 1 0 17 19 2 offsets" in words  # leader, log start, LSO, HW, held
    assert "audit 0 1 0 2 3 1 offsets" in words


def test_partition_view_classifies_every_batch(console: ConsoleServer) -> None:
    got = get(console.url, "/topics/orders/0")
    assert got.status == 200
    assert batch_kinds(got.body) == EXPECTED_KINDS
    assert markers(got.body) == {"log-start": 0, "lso": 17, "hw": 19}
    # The LSO sits right before the open transaction's first batch; the HW after the last.
    order = timeline_order(got.body)
    assert order[order.index("marker:lso") + 1] == "batch:17"
    assert order[-1] == "marker:hw"
    assert "producer 3 at offset 14, epoch 1" in text(got.body)  # the fenced zombie
    assert "producer 2 from offset 9" in text(got.body)  # the aborted-transactions list


def test_partition_view_shows_both_readers_side_by_side(console: ConsoleServer) -> None:
    body = get(console.url, "/topics/orders/0").body
    assert reader_offsets(body, "read-uncommitted") == [
        0,
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        9,
        10,
        12,
        13,
        15,
        17,
        18,
    ]
    # read_committed: no aborted records, nothing from the LSO (17) on.
    assert reader_offsets(body, "read-committed") == [0, 1, 2, 3, 4, 5, 6, 7, 15]


def test_partition_view_opens_a_batch(console: ConsoleServer) -> None:
    body = get(console.url, "/topics/orders/0?from=0&batch=10").body
    words = text(body)
    assert "Batch 9-10 transactional, aborted" in words
    assert "producer id 2, epoch 0" in words
    assert "sequence 0-1" in words
    assert "9 refund refund-1 10 refund refund-2" in words


def test_partition_view_window_and_errors(console: ConsoleServer) -> None:
    later = get(console.url, "/topics/orders/0?from=15")
    assert min(batch_kinds(later.body)) == 15
    beyond = get(console.url, "/topics/orders/0?from=999")  # out of range: from the log start
    assert batch_kinds(beyond.body) == EXPECTED_KINDS
    assert get(console.url, "/topics/orders/0?from=x").status == 400
    assert get(console.url, "/topics/nope/0").status == 404


def test_transactions_view(console: ConsoleServer) -> None:
    got = get(console.url, "/transactions")
    assert got.status == 200
    rows = dict(re.findall(r'data-transactional-id="([a-z]+)" data-state="([A-Za-z]+)"', got.body))
    expected = {
        "open": "Ongoing",
        "committer": "CompleteCommit",
        "aborter": "CompleteAbort",
        "zombie": "CompleteCommit",  # its successor's transaction
    }
    assert {key: rows.get(key) for key in expected} == expected
    words = text(got.body)
    assert "zombie CompleteCommit 3 2" in words  # producer id 3, epoch 2: fenced once, bumped
    assert "open Ongoing 4 0 audit-0 orders-0" in words
    # The open transaction, in each partition it holds, known to its coordinator.
    assert "orders-0 4 0 open 17 17 19" in words
    assert "audit-0 4 0 open 2 2 3" in words
    assert 'data-hanging="true"' not in got.body
    assert "abort</button>" not in got.body  # read-only


def test_producers_view(console: ConsoleServer) -> None:
    words = text(get(console.url, "/producers").body)
    assert "orders-0 4 0 1" in words
    assert "offset 17" in words
    assert "audit-0 4 0 0" in words


def test_groups_views(console: ConsoleServer) -> None:
    # (copier, which only has offsets a transaction committed, samsa does not list: Kafka
    # would, as Empty. Its page opens all the same.)
    assert "billing consumer Stable" in text(get(console.url, "/groups").body)
    billing = get(console.url, f"/groups/{example.GROUP}")
    words = text(billing.body)
    assert "billing-1" in words and "orders-0" in words  # the member and its assignment
    # committed 2, HW 19, LSO 17: lag 17, of which a read_committed consumer can read 15
    assert 'data-partition="orders-0" data-lag="17" data-how="OffsetCommit"' in billing.body
    assert "orders-0 2 19 17 17 15 OffsetCommit" in words
    copier = get(console.url, f"/groups/{example.TXN_GROUP}")
    assert 'data-partition="orders-0" data-lag="14" data-how="transaction"' in copier.body
    by_id = get(console.url, f"/groups?id={example.GROUP}")  # the form redirects to the group
    assert "billing-1" in text(by_id.body)


def test_writes_are_refused_when_read_only(console: ConsoleServer) -> None:
    form = {"topic": "orders", "partition": "0", "producer_id": "4"}
    assert post(console.url, "/transactions/abort", form).status == 403
    reset = {"topic": "orders", "partition": "0", "offset": "0"}
    assert post(console.url, f"/groups/{example.GROUP}/reset", reset).status == 403


def test_events_stream_the_poller_version(console: ConsoleServer) -> None:
    with urllib.request.urlopen(console.url + "events", timeout=10) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert stream.readline().startswith(b"retry: ")
        stream.readline()
        assert stream.readline() == f"data: {console.poller.version}\n".encode()


def test_fragment_is_just_main(console: ConsoleServer) -> None:
    got = get(console.url, "/transactions?fragment=1")
    assert "<html" not in got.body and 'data-transactional-id="open"' in got.body
    assert int(got.headers["x-console-version"]) == console.poller.version


def test_write_actions_with_allow_writes(broker: EmbeddedBroker, built: example.Example) -> None:
    """Abort a transaction (WriteTxnMarkers) and reset an empty group's offsets (OffsetCommit)."""
    victim = example.transactional(broker.bootstrap, "to-abort")
    victim.begin_transaction()
    example._send(victim, "scratch", "stuck-1")
    settings = ConsoleSettings(
        broker.bootstrap,
        port=0,
        poll_interval_s=TEST_POLL_INTERVAL_S,
        requests_per_s=TEST_REQUESTS_PER_S,
        allow_writes=True,
    )
    with ConsoleServer(settings) as console:
        page = get(console.url, "/transactions")
        assert "abort</button>" in page.body
        stuck = [p for p in console.cluster.describe_producers([("scratch", 0)])[("scratch", 0)]]
        producer_id = str(int(stuck[0].producer_id))
        form = {"topic": "scratch", "partition": "0", "producer_id": producer_id}
        elsewhere = post(console.url, "/transactions/abort", form, origin="http://evil.example")
        assert elsewhere.status == 403
        done = post(console.url, "/transactions/abort", form)
        assert done.status == 200 and "aborted producer" in text(done.body)
        marks = markers(get(console.url, "/topics/scratch/0").body)
        assert marks["lso"] == marks["hw"]  # released

        idle = confluent_kafka.Consumer(
            {"bootstrap.servers": broker.bootstrap, "group.id": "idle", "log_level": 0}
        )
        idle.commit(offsets=[confluent_kafka.TopicPartition("orders", 0, 9)], asynchronous=False)
        idle.close()
        assert "orders-0 9 19" in text(get(console.url, "/groups/idle").body)
        reset = {"topic": "orders", "partition": "0", "offset": "1"}
        assert post(console.url, "/groups/idle/reset", reset).status == 200
        assert "orders-0 1 19" in text(get(console.url, "/groups/idle").body)
        busy = post(console.url, f"/groups/{example.GROUP}/reset", reset)  # has a member
        assert "reset failed" in text(busy.body)


def test_many_browsers_cost_one_budget(broker: EmbeddedBroker, built: example.Example) -> None:
    """Clients asking for pages as fast as they can: identical pages are computed once per
    change of the log, and different pages cost the cluster at most the budget's rate (the
    pages then wait their turn)."""
    rate = 5.0
    settings = ConsoleSettings(broker.bootstrap, port=0, poll_interval_s=1.0, requests_per_s=rate)
    with ConsoleServer(settings) as console:
        budget = console.cluster.budget

        def browse(paths: list[str], seconds: float, clients: int) -> int:
            served = [0]
            stop = time.monotonic() + seconds

            def one(n: int) -> None:
                while time.monotonic() < stop:
                    got = get(console.url, paths[(n + served[0]) % len(paths)])
                    assert got.status == 200
                    served[0] += 1

            threads = [threading.Thread(target=one, args=(n,)) for n in range(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            return served[0]

        computed, version = console.pages.computed, console.poller.version
        assert browse(["/topics/orders/0"], 0.6, 20) >= 20
        # the log did not move: at most one computation, plus one per max_age_s
        assert console.pages.computed - computed <= 2 + console.poller.version - version

        began, taken = time.monotonic(), budget.taken
        distinct = [f"/topics/orders/0?from=0&batch={n}" for n in range(19)]
        browse(distinct, 1.5, 3)
        elapsed = time.monotonic() - began
        assert budget.taken - taken >= rate  # the budget was the limit, and it held
        assert budget.taken - taken <= rate * elapsed + budget.burst


def test_cli_misuse_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from samsa.cli import main

    assert main(["console", "--poll-interval-ms", "10"]) == 2
    assert capsys.readouterr().err == "samsa console: --poll-interval-ms must be at least 200\n"
    assert main(["console", "-X", "security.protocol=SMOKE"]) == 2
    assert "security.protocol must be one of" in capsys.readouterr().err
    assert main(["console", "-X", "sasl.usernme=alice"]) == 2
    assert capsys.readouterr().err == "samsa console: unknown client setting 'sasl.usernme'\n"


def test_console_over_sasl_ssl(samsa_secure_broker: EmbeddedBroker) -> None:
    """The console's Kafka connection with a SASL_SSL client's settings (librdkafka's names)."""
    from samsa.admin.security import ClientSecurity

    client = samsa_secure_broker.clients.confluent("alice")
    bootstrap = client.pop("bootstrap.servers")
    producer = confluent_kafka.Producer({**client, "bootstrap.servers": bootstrap, "log_level": 0})
    producer.produce("secured", b"x")
    assert producer.flush(15) == 0
    settings = ConsoleSettings(
        bootstrap,
        port=0,
        requests_per_s=TEST_REQUESTS_PER_S,
        security=ClientSecurity.from_settings(client),
    )
    with ConsoleServer(settings) as console:
        assert batch_kinds(get(console.url, "/topics/secured/0").body) == {0: "plain"}
    wrong = {**client, "sasl.password": "wrong"}
    settings = ConsoleSettings(bootstrap, port=0, security=ClientSecurity.from_settings(wrong))
    with ConsoleServer(settings) as console:
        refused = get(console.url, "/")
        assert refused.status == 503 and "SASL authentication failed" in text(refused.body)
