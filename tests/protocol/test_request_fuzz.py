"""Fuzzing a real `samsa serve` with structurally valid requests and record batches.

tests/protocol/test_fuzz.py fuzzes the framing (garbage bytes, size prefixes, unknown APIs).
This module goes one layer in: every request decodes, so what is fuzzed is what the handlers and
the record validator make of edge-heavy field values (`fuzz_requests`: every served API and
version) and of produced batches with mutated fields (`fuzz_batches`). Each case is checked as
`fuzz_target` says (response, connection, broker alive, another client served, control data
intact, memory and descriptors bounded), and a batch also gets the outcome the rules in
`fuzz_batches` give: an accepted one is stored as sent (records byte-identical, max timestamp
computed from the records), a refused one moves no log end. At the end a confluent-kafka
consumer reads every accepted record, and no stray transactional batch holds the last stable
offset back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import crc32c
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode

from samsa.protocol.apis import SERVED, ApiKey
from samsa.protocol.batch import CRC_START, HEADER_BYTES, TIMESTAMP_TYPE_MASK, parse_header

from .fuzz_batches import Built, Verdict, batch_specs, build_batch
from .fuzz_requests import EXISTING_TOPIC, TOPIC_NAMES, at_version, requests
from .fuzz_target import (
    RESPONSE_TIMEOUT_S,
    SOAK_TIMEOUT_S,
    Target,
    check_after,
    check_control,
    consume_all,
    crash_and_restart,
    fetch_batch,
    is_quiet,
    log_ends,
    pipeline,
    running_target,
    runs,
)
from .wire import Conn, produce_request

BATCHES = "samsa-fuzz-batches"  # where the batch cases produce: never named by request cases
BATCH_PARTITIONS = 2
assert BATCHES not in TOPIC_NAMES
REQUESTS, REQUESTS_SOAK = runs(1000)
BATCHES_RUN, BATCHES_SOAK = runs(1000)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with running_target(tmp_path_factory, {BATCHES: BATCH_PARTITIONS, EXISTING_TOPIC: 3}) as t:
        yield t


def _pipelined(drawn: list[Any]) -> list[Any]:
    """The requests in the order drawn, but of those that may get no answer only the last,
    sent last (a response behind it would wait with it)."""
    quiet = [r for r in drawn if is_quiet(r)]
    return [r for r in drawn if not is_quiet(r)] + quiet[-1:]


# 1-3 requests on one connection, sent before any response is read.
PIPELINES = st.lists(requests(), min_size=1, max_size=3).map(_pipelined)


@REQUESTS
@given(sent=PIPELINES)
def test_requests(target: Target, sent: list[Any]) -> None:
    pipeline(target, sent)
    check_after(target)


@pytest.mark.slow
@pytest.mark.timeout(SOAK_TIMEOUT_S)
@REQUESTS_SOAK
@given(sent=PIPELINES)
def test_requests_soak(target: Target, sent: list[Any]) -> None:
    pipeline(target, sent)
    check_after(target)


# ----------------------------------------------------------------------------- batch cases


def produce_at(version: int, topic: str, partitions: dict[int, bytes | None], acks: int) -> Any:
    """A Produce request of any served version."""
    return at_version(produce_request(topic, partitions, acks), version)


def check_stored(conn: Conn, partition: int, base_offset: int, built: Built) -> None:
    """An accepted batch is stored as sent: its records byte for byte, its header but for the
    offset, leader epoch and max timestamp (computed from the records), with a valid CRC."""
    stored, high_watermark = fetch_batch(conn, BATCHES, partition, base_offset)
    assert stored, f"nothing stored at offset {base_offset}"
    sent, kept = parse_header(built.data), parse_header(stored)
    assert stored[HEADER_BYTES:] == built.records_section
    assert crc32c.crc32c(stored[CRC_START:]) == kept.crc
    assert high_watermark == base_offset + kept.records_count
    same: tuple[str, ...] = ("batch_length", "last_offset_delta", "base_timestamp")
    same += ("producer_id", "producer_epoch", "base_sequence", "records_count")
    for name in same:
        assert getattr(kept, name) == getattr(sent, name), name
    if not built.log_append_time:
        assert kept.attributes == sent.attributes
        assert kept.max_timestamp == built.max_timestamp, "max timestamp not computed"
    assert not kept.attributes & TIMESTAMP_TYPE_MASK  # a CreateTime topic


def produce_batches(target: Target, specs: list[Any], version: int, acks: int) -> None:
    now_ms = int(time.time() * 1000)
    built = {
        p: build_batch(spec, now_ms, target.fresh_producer_id(), version)
        for p, spec in enumerate(specs)
    }
    request = produce_at(version, BATCHES, {p: b.data for p, b in built.items()}, acks)
    transactional = any(
        len(b.data) >= HEADER_BYTES and parse_header(b.data).is_transactional
        for b in built.values()
    )
    with Conn(target.broker.bootstrap, timeout_s=RESPONSE_TIMEOUT_S) as conn:
        ends = log_ends(conn, BATCHES, BATCH_PARTITIONS)
        response = conn.request(request)
        results = {int(r.index): r for r in response.responses[0].partition_responses}
        assert sorted(results) == sorted(built)
        for partition, batch in built.items():
            result, end = results[partition], ends[partition]
            expect = batch.expect
            what = (
                f"partition {partition}: expected {expect.verdict.value} "
                f"{sorted(expect.codes)} ({'; '.join(expect.reasons)}), "
                f"got {result.error_code!r} ({getattr(result, 'error_message', '')})"
            )
            code = ErrorCode(result.error_code).name
            target.outcomes[f"batch {expect.verdict.value}: {code}"] += 1
            if transactional:
                # Kafka (KafkaApis.handleProduceRequest): transactional records without a
                # transactional id refuse the whole request, every partition.
                assert result.error_code == ErrorCode.transactional_id_authorization_failed, what
                _, high_watermark = fetch_batch(conn, BATCHES, partition, end)
                assert high_watermark == end, f"refused, yet stored: {what}"
            elif result.error_code == ErrorCode.none:
                assert expect.verdict is not Verdict.REFUSE, what
                assert result.base_offset == end, what
                check_stored(conn, partition, end, batch)
                records = specs[partition].records
                for index, record in enumerate(records):
                    target.accepted[(partition, end + index)] = record
            else:
                assert expect.verdict is not Verdict.ACCEPT, what
                assert result.error_code in expect.codes, what
                _, high_watermark = fetch_batch(conn, BATCHES, partition, end)
                assert high_watermark == end, f"refused, yet stored: {what}"


# One Produce request: a batch for each of 1-2 partitions, any served version.
PRODUCE_CASES = st.tuples(
    st.lists(batch_specs(), min_size=1, max_size=BATCH_PARTITIONS),
    st.integers(SERVED[ApiKey.PRODUCE].min, SERVED[ApiKey.PRODUCE].max),
    st.sampled_from([-1, 1]),
)


@BATCHES_RUN
@given(case=PRODUCE_CASES)
def test_batches(target: Target, case: tuple[list[Any], int, int]) -> None:
    produce_batches(target, *case)
    check_after(target)


@pytest.mark.slow
@pytest.mark.timeout(SOAK_TIMEOUT_S)
@BATCHES_SOAK
@given(case=PRODUCE_CASES)
def test_batches_soak(target: Target, case: tuple[list[Any], int, int]) -> None:
    produce_batches(target, *case)
    check_after(target)


# ----------------------------------------------------------------------------- afterwards


def test_zz_the_broker_recovers_from_kill_9_after_the_fuzzing(target: Target) -> None:
    crash_and_restart(target)


def test_zz_accepted_records_are_consumable(target: Target) -> None:
    """Runs last: a real consumer reads every accepted record, as it was produced; no stray
    transactional batch keeps read_committed readers back; the control topic is intact."""
    check_control(target)
    assert target.accepted, "no batch was accepted"
    with Conn(target.broker.bootstrap) as conn:
        ends = log_ends(conn, BATCHES, BATCH_PARTITIONS)
        assert log_ends(conn, BATCHES, BATCH_PARTITIONS, committed=True) == ends
    messages = consume_all(target, BATCHES, BATCH_PARTITIONS, committed=False)
    read = {(m.partition(), m.offset()): m for m in messages}
    assert sorted(read) == sorted(target.accepted)
    for place, record in target.accepted.items():
        message = read[place]
        headers = [(k.encode(), v) for k, v in message.headers() or []]
        assert (message.key(), message.value(), headers) == (
            record.key,
            record.value,
            list(record.headers),
        ), place
