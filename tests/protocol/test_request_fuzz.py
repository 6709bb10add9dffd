"""Fuzzing a real `samsa serve` with structurally valid requests and record batches.

tests/protocol/test_fuzz.py fuzzes the framing (garbage bytes, size prefixes, unknown APIs).
This module goes one layer in: every request decodes, so what is fuzzed is what the handlers and
the record validator make of edge-heavy field values (`fuzz_requests`: every served API and
version) and of produced batches with mutated fields (`fuzz_batches`).

Of each case:
- the response arrives, unless the request may wait (a Fetch long poll, a JoinGroup or SyncGroup
  waiting for a rebalance); it decodes with kio, answers the correlation id, and carries only
  error codes Kafka defines.
- the connection stays open. Kafka closes one for a request that decodes in one case only: a
  Produce with acks=0 that failed, since such a client reads no response and learns of the
  failure from the close. For those, a second request on the same connection is either
  answered (the produce succeeded) or meets a close.
- a batch gets the outcome the rules in `fuzz_batches` give; an accepted one is stored as sent
  (records byte-identical, max timestamp computed from the records) and readable, a refused
  one moves no log end. At the end a confluent-kafka consumer reads every accepted record, and
  no stray transactional batch holds the last stable offset back.
After each case:
- the broker process is alive and logged nothing at ERROR (a handler that raised: a bug);
- a fresh connection does ApiVersions, Metadata, a produce of one record to a control topic
  and a fetch of it; every `CONTROL_CHECK_EVERY` cases every control record acknowledged so
  far reads back byte-identical;
- the broker's RSS and open file descriptors are under bounds.

The broker is a subprocess, so its memory and descriptors are its own and a crash of the
process (a native abort, say) fails the test instead of ending pytest.

Default run: `FUZZ_CASES` derandomized cases per test (the same ones every run: reproducible
CI). `--run-slow` adds soak runs of `SOAK_CASES` fresh random cases each; Hypothesis prints the
blob that replays a failure. SAMSA_REQUEST_FUZZ_CASES / SAMSA_REQUEST_SOAK_CASES override.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import os
import time
from collections.abc import Iterator
from typing import Any

import crc32c
import pytest
from confluent_kafka import Consumer, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.errors import ErrorCode
from kio.schema.list_offsets.v7.request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
from kio.static.primitive import i8, i32, i64

from samsa.protocol import codec
from samsa.protocol.apis import SERVED, ApiKey
from samsa.protocol.batch import (
    CRC_START,
    HEADER_BYTES,
    TIMESTAMP_TYPE_MASK,
    iter_batches,
    parse_header,
)
from samsa.protocol.build import build
from samsa.testing import BrokerProcess

from .fuzz_batches import Built, RecordSpec, Verdict, batch_specs, build_batch
from .fuzz_requests import (
    CREATABLE_TOPICS,
    EXISTING_TOPIC,
    PARTITIONS_MAX,
    TOPIC_NAMES,
    request_class,
    requests,
)
from .wire import Conn, create_topics_request, fetch_request, make_batch, produce_request

CONTROL = "samsa-fuzz-control"  # the probe's topic: never named by a fuzz case
BATCHES = "samsa-fuzz-batches"  # where the batch cases produce: never named by request cases
BATCH_PARTITIONS = 2
FUZZ_CASES = int(os.environ.get("SAMSA_REQUEST_FUZZ_CASES", "300"))
SOAK_CASES = int(os.environ.get("SAMSA_REQUEST_SOAK_CASES", "3000"))
CONTROL_CHECK_EVERY = 25
RESPONSE_TIMEOUT_S = 15.0  # a loaded 2-core machine, fsyncs included
MAY_WAIT_S = 1.0  # how long a request that may legitimately wait is given
FETCH_WAIT_MAX_MS = 500  # a Fetch with a longer max wait may wait
# Memory: what validation (16 MiB of inflation per batch), a few large batches in flight and
# the interpreter's arenas may add after warm-up. A leak of a few KB per case passes this
# in the default run and fails the soak.
RSS_GROWTH_MAX_BYTES = 192 << 20
# Descriptors: every partition the fuzzing can create (4 each for one segment, as measured
# for a 50-partition topic), plus the probe's and a case's connections.
FDS_PER_PARTITION = 4
FDS_SLACK = 64
PROBE_WARMUP_CASES = 20
FIRST_PRODUCER_ID = 10**12  # above any id InitProducerId hands out here

FUZZ = settings(
    max_examples=FUZZ_CASES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
SOAK = settings(FUZZ, max_examples=SOAK_CASES, derandomize=False)

assert CONTROL not in TOPIC_NAMES and BATCHES not in TOPIC_NAMES
KNOWN_ERROR_CODES = frozenset(ErrorCode)


class Target:
    """The broker under fuzzing and what the checks remember between cases."""

    def __init__(self, broker: BrokerProcess) -> None:
        self.broker = broker
        self.rss_max_bytes = 0
        self.fds_max = 0
        self.control: dict[int, bytes] = {}  # offset: the batch as first fetched
        self.log_lines_checked = 0
        self.cases = 0
        self.accepted: dict[tuple[int, int], RecordSpec] = {}  # (partition, offset): record
        self.producer_id = FIRST_PRODUCER_ID
        self.peak_rss_bytes = 0
        self.peak_fds = 0
        self.outcomes: collections.Counter[str] = collections.Counter()  # printed at the end

    def __repr__(self) -> str:  # what Hypothesis prints with a failing case
        return f"Target({self.broker.bootstrap}, after {self.cases} cases)"

    def fresh_producer_id(self) -> int:
        self.producer_id += 1
        return self.producer_id


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    data_dir = str(tmp_path_factory.mktemp("request-fuzz") / "data")
    broker = BrokerProcess(data_dir, log_level="WARNING").start()
    try:
        fuzzed = Target(broker)
        with Conn(broker.bootstrap) as conn:
            for topic, partitions in (
                (CONTROL, 1),
                (BATCHES, BATCH_PARTITIONS),
                (EXISTING_TOPIC, 3),
            ):
                response = conn.request(create_topics_request(topic, partitions))
                assert response.topics[0].error_code == ErrorCode.none
        for _ in range(PROBE_WARMUP_CASES):
            probe(fuzzed)
        fuzzed.rss_max_bytes = broker.rss_bytes() + RSS_GROWTH_MAX_BYTES
        partitions_max = CREATABLE_TOPICS * PARTITIONS_MAX
        fuzzed.fds_max = broker.open_fds() + partitions_max * FDS_PER_PARTITION + FDS_SLACK
        yield fuzzed
        print(
            f"\n{fuzzed.cases} cases; broker peak RSS {fuzzed.peak_rss_bytes >> 20} MiB "
            f"(bound {fuzzed.rss_max_bytes >> 20} MiB), peak fds {fuzzed.peak_fds} "
            f"(bound {fuzzed.fds_max})"
        )
        for outcome, count in sorted(fuzzed.outcomes.items()):
            print(f"{count:6} {outcome}")
    finally:
        broker.stop()


# ----------------------------------------------------------------------------- after each case


def probe(target: Target) -> None:
    """Another client is still served: ApiVersions, Metadata, produce and fetch a record."""
    value = b"probe-%d" % target.cases
    with Conn(target.broker.bootstrap, timeout=RESPONSE_TIMEOUT_S) as conn:
        versions = conn.request(
            ApiVersionsRequest(client_software_name="probe", client_software_version="1")
        )
        assert versions.error_code == ErrorCode.none
        metadata = conn.request(
            MetadataRequest(
                topics=(MetadataRequestTopic(topic_id=None, name=CONTROL),),
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=False,
            )
        )
        [topic] = metadata.topics
        assert topic.error_code == ErrorCode.none and len(topic.partitions) == 1
        produced = conn.request(produce_request(CONTROL, {0: make_batch([value])}))
        [result] = produced.responses[0].partition_responses
        assert result.error_code == ErrorCode.none, result
        stored, _ = fetch_batch(conn, CONTROL, 0, result.base_offset)
        assert stored[-len(value) - 1 : -1] == value  # the value, then an empty header count
        target.control[result.base_offset] = stored


def fetch_batch(conn: Conn, topic: str, partition: int, offset: int) -> tuple[bytes, int]:
    """The stored batch at `offset` (b"" at the log end) and the high watermark."""
    response = conn.request(fetch_request(topic, [partition], offset))
    [data] = response.responses[0].partitions
    assert data.error_code == ErrorCode.none, data
    records = bytes(data.records or b"")
    for position, header in iter_batches(records):
        if header.base_offset == offset:
            return records[position : position + header.size], int(data.high_watermark)
    return b"", int(data.high_watermark)


def check_control(target: Target) -> None:
    """Every control record acknowledged so far reads back byte-identical."""
    stored: dict[int, bytes] = {}
    with Conn(target.broker.bootstrap, timeout=RESPONSE_TIMEOUT_S) as conn:
        offset = 0
        while True:
            response = conn.request(fetch_request(CONTROL, [0], offset))
            [data] = response.responses[0].partitions
            assert data.error_code == ErrorCode.none
            records = bytes(data.records or b"")
            for position, header in iter_batches(records):
                stored[header.base_offset] = records[position : position + header.size]
                offset = header.next_offset
            if offset >= data.high_watermark:
                break
            assert records, "no progress below the high watermark"
    changed = [o for o, batch in target.control.items() if stored.get(o) != batch]
    assert changed == [], f"control records changed or lost at offsets {changed[:10]}"


def check_after(target: Target) -> None:
    broker = target.broker
    assert broker.running, "the broker died:\n" + "\n".join(broker.output[-40:])
    lines = broker.output[target.log_lines_checked :]
    target.log_lines_checked += len(lines)
    errors = [line for line in lines if " ERROR " in line or " CRITICAL " in line]
    assert errors == [], "the broker logged errors:\n" + "\n".join(lines)
    probe(target)
    target.cases += 1
    rss, fds = broker.rss_bytes(), broker.open_fds()
    target.peak_rss_bytes = max(target.peak_rss_bytes, rss)
    target.peak_fds = max(target.peak_fds, fds)
    assert rss <= target.rss_max_bytes, f"broker RSS {rss >> 20} MiB"
    assert fds <= target.fds_max, f"broker holds {fds} file descriptors"
    if target.cases % CONTROL_CHECK_EVERY == 0:
        check_control(target)


# ----------------------------------------------------------------------------- request cases


def error_codes(value: Any) -> Iterator[Any]:
    """Every `error_code` in a decoded response, at any depth."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            inner = getattr(value, item.name)
            if item.name == "error_code":
                yield inner
            else:
                yield from error_codes(inner)
    elif isinstance(value, tuple):
        for inner in value:
            yield from error_codes(inner)


def may_wait(request: Any) -> bool:
    api = type(request).__api_key__
    if api == ApiKey.FETCH:
        return bool(request.max_wait > datetime.timedelta(milliseconds=FETCH_WAIT_MAX_MS))
    return api in (ApiKey.JOIN_GROUP, ApiKey.SYNC_GROUP)


def exchange(target: Target, request: Any) -> None:
    """Send one request on a fresh connection and check what comes back."""
    api, version = type(request).__api_key__, type(request).__version__
    with Conn(target.broker.bootstrap, timeout=RESPONSE_TIMEOUT_S) as conn:
        correlation_id = conn.send(request)
        if api == ApiKey.PRODUCE and request.acks == 0:
            # No response; the broker closes the connection if the produce failed.
            follow_up = conn.send(
                ApiVersionsRequest(client_software_name="fuzz", client_software_version="1")
            )
            try:
                got, _ = conn.recv(ApiVersionsRequest)
            except ConnectionError:
                target.outcomes["Produce acks=0: closed"] += 1
                return
            assert got == follow_up
            target.outcomes["Produce acks=0: open"] += 1
            return
        if may_wait(request):
            conn.sock.settimeout(MAY_WAIT_S)
        try:
            frame = conn.recv_frame()
        except TimeoutError:
            assert may_wait(request), f"no response in {RESPONSE_TIMEOUT_S} s"
            target.outcomes[f"{ApiKey(api).name}: waiting"] += 1
            return
        except ConnectionError as exc:
            raise AssertionError(f"the broker closed the connection ({exc})") from None
    got, response = codec.decode_response(api, version, frame)
    assert got == correlation_id
    unknown = [code for code in error_codes(response) if code not in KNOWN_ERROR_CODES]
    assert unknown == [], f"error codes Kafka does not define: {unknown}"
    codes = sorted({ErrorCode(c).name for c in error_codes(response)})
    target.outcomes[f"{ApiKey(api).name}: {' '.join(codes) or 'no error codes'}"] += 1


@FUZZ
@given(request=requests())
def test_requests(target: Target, request: Any) -> None:
    exchange(target, request)
    check_after(target)


@pytest.mark.slow
@SOAK
@given(request=requests())
def test_requests_soak(target: Target, request: Any) -> None:
    exchange(target, request)
    check_after(target)


# ----------------------------------------------------------------------------- batch cases


def produce_at(version: int, topic: str, partitions: dict[int, bytes], acks: int) -> Any:
    """A Produce request of any served version."""
    return build(
        request_class(ApiKey.PRODUCE, version),
        {
            "transactional_id": None,
            "acks": acks,
            "timeout": int(RESPONSE_TIMEOUT_S * 1000),
            "topic_data": [
                {
                    "name": topic,
                    "partition_data": [{"index": p, "records": r} for p, r in partitions.items()],
                }
            ],
        },
    )


def check_stored(conn: Conn, partition: int, base_offset: int, built: Built) -> None:
    """An accepted batch is stored as sent: its records byte for byte, its header but for the
    offset, leader epoch and max timestamp (computed from the records), with a valid CRC."""
    stored, high_watermark = fetch_batch(conn, BATCHES, partition, base_offset)
    assert stored, f"nothing stored at offset {base_offset}"
    sent, kept = parse_header(built.data), parse_header(stored)
    assert stored[HEADER_BYTES:] == built.records_section
    assert crc32c.crc32c(stored[CRC_START:]) == kept.crc
    assert high_watermark == base_offset + kept.records_count
    same = ("batch_length", "last_offset_delta", "base_timestamp", "producer_id")
    same += ("producer_epoch", "base_sequence", "records_count")
    for name in same:
        assert getattr(kept, name) == getattr(sent, name), name
    if not built.log_append_time:
        assert kept.attributes == sent.attributes
        assert kept.max_timestamp == built.max_timestamp, "max timestamp not computed"
    assert not kept.attributes & TIMESTAMP_TYPE_MASK  # a CreateTime topic


def log_ends(conn: Conn, committed: bool = False) -> dict[int, int]:
    """The batch topic's log end offsets (high watermarks), or its last stable offsets."""
    request = ListOffsetsRequest(
        replica_id=i32(-1),
        isolation_level=i8(1 if committed else 0),
        topics=(
            ListOffsetsTopic(
                name=BATCHES,
                partitions=tuple(
                    ListOffsetsPartition(
                        partition_index=i32(p), current_leader_epoch=i32(-1), timestamp=i64(-1)
                    )
                    for p in range(BATCH_PARTITIONS)
                ),
            ),
        ),
    )
    response = conn.request(request)
    return {int(p.partition_index): int(p.offset) for p in response.topics[0].partitions}


def produce_batches(target: Target, specs: list[Any], version: int, acks: int) -> None:
    now_ms = int(time.time() * 1000)
    built = {
        p: build_batch(spec, now_ms, target.fresh_producer_id(), version)
        for p, spec in enumerate(specs)
    }
    request = produce_at(version, BATCHES, {p: b.data for p, b in built.items()}, acks)
    with Conn(target.broker.bootstrap, timeout=RESPONSE_TIMEOUT_S) as conn:
        ends = log_ends(conn)
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
            if result.error_code == ErrorCode.none:
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


@FUZZ
@given(case=PRODUCE_CASES)
def test_batches(target: Target, case: tuple[list[Any], int, int]) -> None:
    produce_batches(target, *case)
    check_after(target)


@pytest.mark.slow
@SOAK
@given(case=PRODUCE_CASES)
def test_batches_soak(target: Target, case: tuple[list[Any], int, int]) -> None:
    produce_batches(target, *case)
    check_after(target)


# ----------------------------------------------------------------------------- afterwards


def test_zz_accepted_records_are_consumable(target: Target) -> None:
    """Runs last: a real consumer reads every accepted record, as it was produced; no stray
    transactional batch keeps read_committed readers back; the control topic is intact."""
    check_control(target)
    assert target.accepted, "no batch was accepted"
    with Conn(target.broker.bootstrap) as conn:
        assert log_ends(conn, committed=True) == log_ends(conn)
    consumer = Consumer(
        {
            "bootstrap.servers": target.broker.bootstrap,
            "group.id": "samsa-fuzz-check",
            "enable.auto.commit": False,
            "isolation.level": "read_uncommitted",
        }
    )
    consumer.assign([TopicPartition(BATCHES, p, 0) for p in range(BATCH_PARTITIONS)])
    read: dict[tuple[int, int], Any] = {}
    deadline = time.monotonic() + 60
    try:
        while len(read) < len(target.accepted) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            read[(message.partition(), message.offset())] = message
    finally:
        consumer.close()
    assert sorted(read) == sorted(target.accepted)
    for place, record in target.accepted.items():
        message = read[place]
        headers = [(k.encode(), v) for k, v in message.headers() or []]
        assert (message.key(), message.value(), headers) == (
            record.key,
            record.value,
            list(record.headers),
        ), place
