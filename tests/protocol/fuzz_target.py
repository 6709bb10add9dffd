"""The broker a fuzz test runs against, and the checks made of every case and after it
(tests/protocol/test_request_fuzz.py, tests/protocol/test_flow_fuzz.py).

Of each request (`exchange`, or `pipeline` for several on one connection):
- the response arrives, unless the request may wait (a Fetch long poll, a JoinGroup or SyncGroup
  waiting for a rebalance); it decodes with kio, answers the correlation id (responses come in
  request order), and carries only error codes Kafka defines.
- the connection stays open. Kafka closes one for a request that decodes in one case only: a
  Produce with acks=0 that failed, since such a client reads no response and learns of the
  failure from the close. For those, a second request on the same connection is either
  answered (the produce succeeded) or meets a close.
After each case (`check_after`):
- the broker process is alive and logged nothing at ERROR (a handler that raised: a bug);
- a fresh connection does ApiVersions, Metadata, a produce of one record to a control topic
  and a fetch of it; every `CONTROL_CHECK_EVERY` cases every control record acknowledged so
  far reads back byte-identical;
- the broker's RSS and open file descriptors are under bounds.

The broker is a `samsa serve` subprocess, so its memory and descriptors are its own and a crash
of the process (a native abort, say) fails the test instead of ending pytest.

Runs (`runs`): a default run is a fixed number of derandomized cases (the same ones every
run: reproducible CI); its soak, in a test marked slow (`--run-slow`), runs `SOAK_FACTOR` times
as many fresh random cases, and Hypothesis prints the blob that replays a failure.
SAMSA_FUZZ_SCALE multiplies every count (0.1 for a quick look, 10 for a long night).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from hypothesis import HealthCheck, settings
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.errors import ErrorCode
from kio.schema.list_offsets.v7.request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
from kio.schema.types import BrokerId, TopicName
from kio.static.primitive import i8, i32, i64

from samsa.protocol import codec
from samsa.protocol.apis import ApiKey
from samsa.protocol.batch import iter_batches
from samsa.testing import BrokerProcess

from .fuzz_batches import RecordSpec
from .fuzz_requests import CREATABLE_TOPICS, PARTITIONS_MAX, TOPIC_NAMES
from .wire import Conn, create_topics_request, fetch_request, make_batch, produce_request

CONTROL = "samsa-fuzz-control"  # the probe's topic: never named by a fuzz case
SCALE = float(os.environ.get("SAMSA_FUZZ_SCALE", "1"))  # multiplies every count of cases
SOAK_FACTOR = 10  # a soak runs ten times the default's cases
# A soak test's own timeout (pytest's is 300 s a test): its cases take about 5 minutes, and a
# timeout that interrupts a case leaves the broker in a state the next cases trip over.
SOAK_TIMEOUT_S = round(3600 * max(SCALE, 1))
CONTROL_CHECK_EVERY = 25
RESPONSE_TIMEOUT_S = 15.0  # a loaded 2-core machine, fsyncs included
MAY_WAIT_S = 1.0  # how long a request that may legitimately wait is given
FETCH_WAIT_MAX_MS = 500  # a Fetch with a longer max wait may wait
# Memory: what validation (16 MiB of inflation per batch), a few large batches in flight and
# the interpreter's arenas may add after warm-up (the soaks peak about 15 MiB above it). A leak
# of 5 KB a case (110 MB over a soak's 22,000) fails.
RSS_GROWTH_MAX_BYTES = 96 << 20
# Descriptors: every partition the fuzzing can create (4 each for one segment, as measured
# for a 50-partition topic), plus the probe's and a case's connections.
FDS_PER_PARTITION = 4
FDS_SLACK = 64
PROBE_WARMUP_CASES = 20
CONSUME_TIMEOUT_S = 60.0
FIRST_PRODUCER_ID = 10**12  # above any id InitProducerId hands out here

_FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


def runs(cases: int) -> tuple[settings, settings]:
    """Hypothesis settings for a default run of `cases` derandomized cases and for its soak,
    `SOAK_FACTOR` times as many fresh random ones."""
    default = settings(_FUZZ, max_examples=max(1, round(cases * SCALE)))
    soak_cases = max(1, round(cases * SOAK_FACTOR * SCALE))
    return default, settings(default, max_examples=soak_cases, derandomize=False)


assert CONTROL not in TOPIC_NAMES
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


@contextlib.contextmanager
def running_target(
    tmp_path_factory: pytest.TempPathFactory, topics: Mapping[str, int]
) -> Iterator[Target]:
    """A fresh `samsa serve` with the control topic and `topics` (name: partitions), warmed
    up, its bounds set from what it uses then; prints its figures and outcomes at the end."""
    data_dir = str(tmp_path_factory.mktemp("fuzz") / "data")
    broker = BrokerProcess(data_dir, log_level="WARNING").start()
    try:
        fuzzed = Target(broker)
        with Conn(broker.bootstrap) as conn:
            for topic, partitions in {CONTROL: 1, **topics}.items():
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
    # The output is read by a thread: an error logged by the last case, or by background
    # work, may reach it after that case's check.
    assert not logged_errors(broker.output), "\n".join(broker.output[-40:])


# ----------------------------------------------------------------------------- after each case


def probe(target: Target) -> None:
    """Another client is still served: ApiVersions, Metadata, produce and fetch a record."""
    value = b"probe-%d" % target.cases
    with Conn(target.broker.bootstrap, timeout_s=RESPONSE_TIMEOUT_S) as conn:
        versions = conn.request(
            ApiVersionsRequest(client_software_name="probe", client_software_version="1")
        )
        assert versions.error_code == ErrorCode.none
        metadata = conn.request(
            MetadataRequest(
                topics=(MetadataRequestTopic(topic_id=None, name=TopicName(CONTROL)),),
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
    with Conn(target.broker.bootstrap, timeout_s=RESPONSE_TIMEOUT_S) as conn:
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


def logged_errors(lines: list[str]) -> list[str]:
    return [line for line in lines if " ERROR " in line or " CRITICAL " in line]


def check_after(target: Target) -> None:
    """What must hold after every case, whatever the case was (see the module docstring)."""
    broker = target.broker
    assert broker.running, "the broker died:\n" + "\n".join(broker.output[-40:])
    lines = broker.output[target.log_lines_checked :]
    target.log_lines_checked += len(lines)
    assert not logged_errors(lines), "the broker logged errors:\n" + "\n".join(lines)
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
    """Every error code (`error_code`, `partition_error_code`, ...) in a decoded response, at
    any depth."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            inner = getattr(value, item.name)
            if item.name.endswith("error_code"):
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


def is_quiet(request: Any) -> bool:
    """A request that may get no response: acks=0, or one that may wait."""
    acks_0 = type(request).__api_key__ == ApiKey.PRODUCE and request.acks == 0
    return acks_0 or may_wait(request)


def exchange(target: Target, request: Any) -> Any:
    """Send one request on a fresh connection and check what comes back: the response, or
    None when none came (acks=0, or a request that may wait and did)."""
    return pipeline(target, [request])[-1]


def pipeline(target: Target, requests: list[Any]) -> list[Any]:
    """Send `requests` back to back on a fresh connection (only the last may be quiet), then
    read and check their responses, which must come in request order."""
    assert not any(is_quiet(r) for r in requests[:-1])
    with Conn(target.broker.bootstrap, timeout_s=RESPONSE_TIMEOUT_S) as conn:
        sent = [(request, conn.send(request)) for request in requests]
        responses = [_receive(target, conn, request, id_) for request, id_ in sent]
    return responses


def _receive(target: Target, conn: Conn, request: Any, correlation_id: int) -> Any:
    api, version = type(request).__api_key__, type(request).__version__
    if api == ApiKey.PRODUCE and request.acks == 0:
        # No response; the broker closes the connection if the produce failed.
        follow_up = conn.send(
            ApiVersionsRequest(client_software_name="fuzz", client_software_version="1")
        )
        try:
            got, _ = conn.recv(ApiVersionsRequest)
        except ConnectionError:
            target.outcomes["Produce acks=0: closed"] += 1
            return None
        assert got == follow_up
        target.outcomes["Produce acks=0: open"] += 1
        return None
    if may_wait(request):
        conn.sock.settimeout(MAY_WAIT_S)
    try:
        frame = conn.recv_frame()
    except TimeoutError:
        assert may_wait(request), f"no response in {RESPONSE_TIMEOUT_S} s"
        target.outcomes[f"{ApiKey(api).name}: waiting"] += 1
        return None
    except ConnectionError as exc:
        raise AssertionError(f"the broker closed the connection ({exc})") from None
    got, response = codec.decode_response(api, version, frame)
    assert got == correlation_id, f"response {got} where {correlation_id} was due"
    unknown = [code for code in error_codes(response) if code not in KNOWN_ERROR_CODES]
    assert unknown == [], f"error codes Kafka does not define: {unknown}"
    codes = sorted({ErrorCode(c).name for c in error_codes(response)})
    target.outcomes[f"{ApiKey(api).name}: {' '.join(codes) or 'no error codes'}"] += 1
    return response


def log_ends(conn: Conn, topic: str, partitions: int, committed: bool = False) -> dict[int, int]:
    """A topic's log end offsets (high watermarks), or its last stable offsets."""
    request = ListOffsetsRequest(
        replica_id=BrokerId(-1),
        isolation_level=i8(1 if committed else 0),
        topics=(
            ListOffsetsTopic(
                name=TopicName(topic),
                partitions=tuple(
                    ListOffsetsPartition(
                        partition_index=i32(p), current_leader_epoch=i32(-1), timestamp=i64(-1)
                    )
                    for p in range(partitions)
                ),
            ),
        ),
    )
    response = conn.request(request)
    return {int(p.partition_index): int(p.offset) for p in response.topics[0].partitions}


def crash_and_restart(target: Target) -> None:
    """kill -9 the broker after the fuzzing and start it on its data dir: it recovers every
    topic, config, producer and coordinator state the fuzzing left, and the control records
    read back byte-identical."""
    check_control(target)
    target.broker.kill9()
    target.broker.start()
    check_control(target)
    probe(target)
    assert not logged_errors(target.broker.output), "\n".join(target.broker.output[-40:])


def consume_all(target: Target, topic: str, partitions: int, committed: bool) -> list[Any]:
    """Every message a confluent-kafka consumer reads from the start of each partition to its
    end (its last stable offset, read_committed): the proof that a real client can."""
    with Conn(target.broker.bootstrap) as conn:
        ends = log_ends(conn, topic, partitions, committed)
    consumer = Consumer(
        {
            "bootstrap.servers": target.broker.bootstrap,
            "group.id": f"samsa-fuzz-check-{topic}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed" if committed else "read_uncommitted",
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    positions = dict.fromkeys(range(partitions), 0)
    messages = []
    deadline = time.monotonic() + CONSUME_TIMEOUT_S
    try:
        while positions != ends and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None:
                assert message.error() is None, message.error()
                messages.append(message)
            for tp in consumer.position([TopicPartition(topic, p) for p in positions]):
                positions[tp.partition] = max(tp.offset, 0)
    finally:
        consumer.close()
    assert positions == ends, f"the consumer stopped at {positions}, short of {ends}"
    return messages
