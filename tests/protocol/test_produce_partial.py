"""One Produce request, several partitions, some batches bad: each partition stands alone."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from samsa.protocol.batch import CONTROL_FLAG, parse_header
from samsa.testing import EmbeddedBroker

from .wire import (
    Conn,
    create_topics_request,
    fetch_request,
    make_batch,
    produce_request,
    with_magic,
)


def _fetch_values(conn: Conn, topic: str, partitions: list[int]) -> dict[int, tuple[int, bytes]]:
    response = conn.request(fetch_request(topic, partitions))
    return {
        int(p.partition_index): (int(p.high_watermark), bytes(p.records or b""))
        for p in response.responses[0].partitions
    }


def test_corrupt_partition_fails_alone_and_good_partition_is_written(
    broker: EmbeddedBroker,
) -> None:
    topic = "partial"
    good = make_batch([b"good-1", b"good-2"])
    corrupt = bytearray(make_batch([b"bad-1"]))
    corrupt[-2] ^= 0x40
    with Conn(broker.bootstrap) as conn:
        assert conn.request(create_topics_request(topic, 2)).topics[0].error_code == 0

        response = conn.request(produce_request(topic, {0: bytes(corrupt), 1: good}))
        [topic_response] = response.responses
        assert topic_response.name == topic
        by_index = {int(p.index): p for p in topic_response.partition_responses}
        assert set(by_index) == {0, 1}
        assert by_index[0].error_code == ErrorCode.corrupt_message
        assert by_index[0].base_offset == -1
        assert by_index[1].error_code == ErrorCode.none
        assert by_index[1].base_offset == 0

        stored = _fetch_values(conn, topic, [0, 1])
        assert stored[0] == (0, b"")
        high_watermark, records = stored[1]
        assert high_watermark == 2
        # The stored batch is the produced one, with only offset/epoch rewritten (outside CRC).
        assert records[16:] == good[16:]
        assert parse_header(records).base_offset == 0


def test_each_kind_of_bad_batch_gets_its_own_error(broker: EmbeddedBroker) -> None:
    topic = "partial-kinds"

    bad_crc = bytearray(make_batch([b"v"]))
    bad_crc[-1] ^= 1
    batches: dict[int, bytes | None] = {
        0: bytes(bad_crc),
        1: with_magic(make_batch([b"v"]), 1),
        2: make_batch([b"\x00\x00\x00\x00"], attributes=CONTROL_FLAG),
        3: make_batch([b"a"]) + make_batch([b"b"]),
        4: make_batch([b"fine"]),
        5: b"\x01\x02\x03",
        6: None,
    }
    expected = {
        0: ErrorCode.corrupt_message,
        1: ErrorCode.invalid_record,
        2: ErrorCode.invalid_record,
        3: ErrorCode.invalid_record,
        4: ErrorCode.none,
        5: ErrorCode.corrupt_message,
        6: ErrorCode.corrupt_message,
    }
    with Conn(broker.bootstrap) as conn:
        assert conn.request(create_topics_request(topic, 7)).topics[0].error_code == 0
        response = conn.request(produce_request(topic, batches))
        got = {int(p.index): p.error_code for p in response.responses[0].partition_responses}
        assert got == expected
        stored = _fetch_values(conn, topic, list(range(7)))
        assert {index: hw for index, (hw, _) in stored.items()} == {
            i: (1 if i == 4 else 0) for i in range(7)
        }


def test_oversized_batch_is_message_too_large_and_not_written(tmp_path: object) -> None:
    topic = "partial-big"

    with (
        EmbeddedBroker(
            data_dir=f"{tmp_path}/data", settings={"message.max.bytes": "2000"}
        ) as small,
        Conn(small.bootstrap) as conn,
    ):
        assert conn.request(create_topics_request(topic, 2)).topics[0].error_code == 0
        response = conn.request(
            produce_request(topic, {0: make_batch([b"x" * 5000]), 1: make_batch([b"y" * 100])})
        )
        got = {int(p.index): p.error_code for p in response.responses[0].partition_responses}
        assert got == {0: ErrorCode.message_too_large, 1: ErrorCode.none}
        stored = _fetch_values(conn, topic, [0, 1])
        assert stored[0][0] == 0
        assert stored[1][0] == 1
