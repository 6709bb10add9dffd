"""`samsa produce` and `samsa consume` against a real broker, each checked against a real client
on the other side: what the tool sends a consumer reads, what a producer sends the tool prints."""

from __future__ import annotations

from confluent_kafka import Producer

from samsa.testing.topics import create_topic

from .support import Tool


def test_produce_keys_and_headers_read_back_by_consume_json(samsa: Tool) -> None:
    create_topic(samsa.bootstrap, "keyed", partitions=1)
    sent = samsa.ok(
        "produce", "--topic", "keyed", "--key-separator", ":", "--header", "source=cli",
        "--json", stdin="k1:one\nk2:two:with colon\nk3:\n",
    ).json()  # fmt: skip
    assert sent["records"] == 3 and sent["errors"] == []
    assert sent["partitions"] == [
        {"partition": 0, "records": 3, "first_offset": 0, "last_offset": 2}
    ]
    records = samsa.ok(
        "consume", "--topic", "keyed", "--from-beginning", "--max-messages", "3", "--json"
    ).json_lines()
    assert [(r["key"], r["value"], r["offset"]) for r in records] == [
        ("k1", "one", 0),
        ("k2", "two:with colon", 1),
        ("k3", "", 2),
    ]
    assert all(r["headers"] == [["source", "cli"]] for r in records)
    assert all(r["topic"] == "keyed" and r["partition"] == 0 for r in records)
    assert all(r["timestamp_type"] == "CreateTime" and r["timestamp"] > 0 for r in records)


def test_consume_prints_as_kafkas_formatter(samsa: Tool) -> None:
    create_topic(samsa.bootstrap, "printed", partitions=1)
    producer = Producer({"bootstrap.servers": samsa.bootstrap})
    producer.produce("printed", b"v1", key=b"k1", headers=[("h", b"x")], timestamp=1_000)
    producer.produce("printed", b"v2", timestamp=2_000)
    assert producer.flush(10) == 0
    everything = samsa.ok(
        "consume", "--topic", "printed", "--from-beginning", "--max-messages", "2",
        "--print-timestamp", "--print-partition", "--print-offset", "--print-headers",
        "--print-key", "--key-separator", "|",
    )  # fmt: skip
    assert everything.out.splitlines() == [
        "CreateTime:1000|Partition:0|Offset:0|h:x|k1|v1",
        "CreateTime:2000|Partition:0|Offset:1|NO_HEADERS|null|v2",
    ]
    assert everything.err == "Processed a total of 2 messages\n"
    # The same through Kafka's property names; values only by default.
    props = samsa.ok(
        "consume", "--topic", "printed", "--partition", "0", "--offset", "1",
        "--max-messages", "1", "--property", "print.key=true", "--property", "key.separator=,",
        "--property", "null.literal=NULL",
    )  # fmt: skip
    assert props.out == "NULL,v2\n"
    plain = samsa.ok("consume", "--topic", "printed", "--from-beginning", "--max-messages", "2")
    assert plain.out == "v1\nv2\n"


def test_produce_headers_per_line_and_null_marker(samsa: Tool) -> None:
    create_topic(samsa.bootstrap, "lines", partitions=1)
    samsa.ok(
        "produce", "--topic", "lines", "--property", "parse.headers=true",
        "--property", "parse.key=true", "--property", "key.separator=;",
        "--property", "null.marker=<null>",
        stdin="a:1,b:2\tkey;value\n\t<null>;tombstone-key-is-null\n",
    )  # fmt: skip
    first, second = samsa.ok(
        "consume", "--topic", "lines", "--from-beginning", "--max-messages", "2", "--json"
    ).json_lines()
    assert (first["headers"], first["key"], first["value"]) == (
        [["a", "1"], ["b", "2"]],
        "key",
        "value",
    )
    assert (second["headers"], second["key"], second["value"]) == (
        [],
        None,
        "tombstone-key-is-null",
    )


def test_consume_stops_after_timeout_when_nothing_comes(samsa: Tool) -> None:
    create_topic(samsa.bootstrap, "quiet", partitions=2)
    result = samsa.ok("consume", "--topic", "quiet", "--timeout", "0.5", "--json")
    assert result.out == ""


def test_produce_and_consume_misuse(samsa: Tool) -> None:
    create_topic(samsa.bootstrap, "misused", partitions=1)
    for argv, stdin, message in [
        (
            ("produce", "--topic", "misused", "--key-separator", ":"),
            "no separator\n",
            "line 1: no key separator",
        ),
        (
            ("produce", "--topic", "misused", "--property", "parse.kye=true"),
            "",
            "unknown --property parse.kye",
        ),
        (("consume", "--topic", "misused", "--max-messages", "0"), "", "--max-messages must be 1"),
        (("consume", "--topic", "misused", "--offset", "3"), "", "--offset needs --partition"),
        (
            ("consume", "--topic", "misused", "--group", "g", "--partition", "0"),
            "",
            "--partition and",
        ),
    ]:
        result = samsa(*argv, stdin=stdin)
        command = argv[0]
        assert result.code == 2, (argv, result.err)
        assert result.err.startswith(f"samsa {command}: {message}"), result.err
        assert result.err.count("\n") == 1
    missing_consume = samsa("consume", "--topic", "never-made-here", "--max-messages", "1")
    assert missing_consume.code == 1
    assert missing_consume.err == "samsa consume: no such topic: never-made-here\n"


def test_read_committed_hides_an_aborted_transaction(samsa: Tool) -> None:
    create_topic(samsa.bootstrap, "txns", partitions=1)
    producer = Producer({"bootstrap.servers": samsa.bootstrap, "transactional.id": "ops-txn"})
    producer.init_transactions(10)
    for batch, commit in [((b"c1", b"c2"), True), ((b"a1", b"a2", b"a3"), False)]:
        producer.begin_transaction()
        for value in batch:
            producer.produce("txns", value)
        producer.flush(10)
        if commit:
            producer.commit_transaction(10)
        else:
            producer.abort_transaction(10)
    # The tool's own transaction: all of stdin, committed at its end.
    samsa.ok("produce", "--topic", "txns", "--transactional-id", "ops-tool-txn", stdin="t1\nt2\n")

    def values(isolation: str, count: int) -> list[str]:
        records = samsa.ok(
            "consume", "--topic", "txns", "--from-beginning", "--isolation", isolation,
            "--max-messages", str(count), "--timeout", "2", "--json",
        ).json_lines()  # fmt: skip
        return [r["value"] for r in records]

    assert values("read_uncommitted", 7) == ["c1", "c2", "a1", "a2", "a3", "t1", "t2"]
    # 7 asked for, 4 there: it stops on --timeout having printed only the committed ones.
    assert values("read_committed", 7) == ["c1", "c2", "t1", "t2"]
