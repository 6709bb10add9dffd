"""Garbage and fuzzed frames over raw TCP never crash the broker, never disturb a healthy client
producing and consuming at the same time, and never change data already stored."""

from __future__ import annotations

import datetime
import logging
import os
import socket
import struct
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from confluent_kafka import Producer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.create_topics.v7.request import CreatableTopic, CreateTopicsRequest
from kio.schema.errors import ErrorCode
from kio.schema.list_offsets.v7.request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
from kio.schema.types import BrokerId, TopicName
from kio.static.primitive import i8, i16, i32, i32Timedelta, i64
from kio.static.protocol import RequestPayload

from samsa.protocol import codec
from samsa.protocol.apis import SERVED
from samsa.testing import EmbeddedBroker

from .wire import (
    Conn,
    create_topics_request,
    fetch_request,
    make_batch,
    produce_request,
    read_partition,
)

LIMIT = 1 << 20  # socket.request.max.bytes for this broker
HEALTHY = "healthy"
TARGET = "fuzz-target"
EXAMPLES = int(os.environ.get("SAMSA_FUZZ_EXAMPLES", "150"))  # more: a deeper soak

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


class _Errors(logging.Handler):
    """Collects ERROR records: a handler raising, or an exception escaping a connection task."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class HealthyClient:
    """A confluent-kafka producer writing to HEALTHY all through the fuzzing, and a raw-socket
    client reading it back and asking for metadata."""

    bootstrap: str
    stop: threading.Event = field(default_factory=threading.Event)
    delivered: list[tuple[int, int, bytes]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    roundtrips: int = 0
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="healthy-client", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "compression.type": "none",
                "linger.ms": 5,
                "acks": "all",
                "enable.idempotence": False,
                "message.send.max.retries": 0,
            }
        )

        def report(err: object, msg: object) -> None:
            if err is not None:
                self.failures.append(f"delivery failed: {err}")
            else:
                self.delivered.append((msg.partition(), msg.offset(), msg.value()))  # type: ignore[attr-defined]

        conn = Conn(self.bootstrap)
        sequence = 0
        try:
            while not self.stop.is_set():
                value = b"healthy-%06d" % sequence
                producer.produce(HEALTHY, value=value, partition=sequence % 2, on_delivery=report)
                sequence += 1
                producer.poll(0)
                if sequence % 10 == 0:
                    response = conn.request(
                        MetadataRequest(
                            topics=(MetadataRequestTopic(topic_id=None, name=TopicName(HEALTHY)),),
                            allow_auto_topic_creation=False,
                            include_topic_authorized_operations=False,
                        )
                    )
                    if response.topics[0].error_code != ErrorCode.none:
                        self.failures.append(f"metadata: {response.topics[0].error_code}")
                    fetched = conn.request(fetch_request(HEALTHY, [0, 1]))
                    if any(p.error_code for p in fetched.responses[0].partitions):
                        self.failures.append("fetch failed")
                    self.roundtrips += 1
                time.sleep(0.005)
            remaining = producer.flush(30)
            if remaining:
                self.failures.append(f"{remaining} messages never delivered")
        except Exception as exc:
            self.failures.append(repr(exc))
        finally:
            conn.close()

    def finish(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(60)
            assert not self.thread.is_alive()


@dataclass
class Env:
    broker: EmbeddedBroker
    healthy: HealthyClient
    errors: _Errors
    before: dict[int, list[tuple[int, bytes | None]]]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    errors = _Errors()
    loggers = [logging.getLogger(name) for name in ("samsa", "asyncio")]
    for logger in loggers:
        logger.addHandler(errors)
    data_dir = str(tmp_path_factory.mktemp("fuzz") / "data")
    settings = {"socket.request.max.bytes": str(LIMIT), "auto.create.topics.enable": "false"}
    try:
        with EmbeddedBroker(data_dir=data_dir, settings=settings) as broker:
            with Conn(broker.bootstrap) as conn:
                for topic, partitions in ((HEALTHY, 2), (TARGET, 1)):
                    response = conn.request(create_topics_request(topic, partitions))
                    assert response.topics[0].error_code == ErrorCode.none
                for i in range(20):
                    batch = make_batch([b"before-%d-%d" % (i, j) for j in range(i % 3 + 1)])
                    response = conn.request(produce_request(HEALTHY, {i % 2: batch}))
                    assert response.responses[0].partition_responses[0].error_code == 0
                before = {p: read_partition(conn, HEALTHY, p) for p in (0, 1)}
            assert len(before[0]) + len(before[1]) == sum(i % 3 + 1 for i in range(20))
            healthy = HealthyClient(broker.bootstrap)
            healthy.start()
            try:
                yield Env(broker, healthy, errors, before)
            finally:
                healthy.finish()
    finally:
        for logger in loggers:
            logger.removeHandler(errors)


# ----------------------------------------------------------------------------- one exchange


@dataclass
class Exchange:
    received: bytes
    closed: bool  # the broker closed (EOF or reset) before our read timeout


def exchange(
    bootstrap: str, data: bytes, half_close: bool = True, timeout: float = 1.0
) -> Exchange:
    host, _, port = bootstrap.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    received = bytearray()
    try:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(timeout)
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return Exchange(bytes(received), True)
                received += chunk
        except ConnectionResetError:
            return Exchange(bytes(received), True)
        except TimeoutError:
            return Exchange(bytes(received), False)
    finally:
        sock.close()


def split_frames(data: bytes) -> tuple[list[bytes], bytes]:
    frames = []
    position = 0
    while len(data) - position >= 4:
        (size,) = struct.unpack_from(">i", data, position)
        assert size >= 4, f"response frame of {size} bytes"
        if len(data) - position - 4 < size:
            break
        frames.append(data[position + 4 : position + 4 + size])
        position += 4 + size
    return frames, data[position:]


def check_exchange(result: Exchange) -> list[bytes]:
    """Responses are always whole frames; a connection we half-closed is closed by the broker
    unless a request (a long-polling fetch, say) is still pending."""
    frames, rest = split_frames(result.received)
    if result.closed:
        assert rest == b"", f"broker sent a partial frame: {rest!r}"
    return frames


def assert_broker_serves(env: Env) -> None:
    assert env.broker.server is not None
    with Conn(env.broker.bootstrap) as conn:
        response = conn.request(
            ApiVersionsRequest(client_software_name="probe", client_software_version="1")
        )
        assert response.error_code == ErrorCode.none


# ----------------------------------------------------------------------------- strategies

SERVED_PAIRS = [(int(k), v) for k, r in SERVED.items() for v in range(r.min, r.max + 1)]


def _base_requests() -> list[bytes]:
    """Valid request frames (size prefix included) that mutations start from. None of them can
    touch HEALTHY's data: produce goes to TARGET, create topics only validates."""
    payloads: list[RequestPayload] = [
        MetadataRequest(
            topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False
        ),
        MetadataRequest(
            topics=(MetadataRequestTopic(topic_id=None, name=TopicName(TARGET)),),
            allow_auto_topic_creation=False,
            include_topic_authorized_operations=False,
        ),
        ApiVersionsRequest(client_software_name="fuzz", client_software_version="0.0"),
        produce_request(TARGET, {0: make_batch([b"fuzz-a", b"fuzz-b"])}),
        produce_request(TARGET, {0: make_batch([b"x"])}, acks=0),
        produce_request(
            TARGET,
            {0: make_batch([b"y" * 40], producer_id=5, producer_epoch=0, base_sequence=0)},
            acks=1,
        ),
        fetch_request(HEALTHY, [0, 1]),
        fetch_request(TARGET, [0], offset=3),
        ListOffsetsRequest(
            replica_id=BrokerId(-1),
            isolation_level=i8(0),
            topics=(
                ListOffsetsTopic(
                    name=TopicName(HEALTHY),
                    partitions=(
                        ListOffsetsPartition(
                            partition_index=i32(0),
                            current_leader_epoch=i32(-1),
                            timestamp=i64(-1),
                        ),
                    ),
                ),
            ),
        ),
        CreateTopicsRequest(
            topics=(
                CreatableTopic(
                    name=TopicName("fz"),
                    num_partitions=i32(3),
                    replication_factor=i16(1),
                    assignments=(),
                    configs=(),
                ),
            ),
            timeout=i32Timedelta.parse(datetime.timedelta(seconds=5)),
            validate_only=True,
        ),
    ]
    return [codec.encode_request(1000 + i, "fuzzer", p) for i, p in enumerate(payloads)]


BASE_REQUESTS = _base_requests()


@st.composite
def mutated_request(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A valid request with bit flips and/or truncation; the size prefix either re-framed to
    match the damaged body (so it gets decoded) or left as it was."""
    original = draw(st.sampled_from(BASE_REQUESTS))
    body = bytearray(original[4:])
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        position = draw(st.integers(min_value=0, max_value=len(body) - 1))
        body[position] ^= 1 << draw(st.integers(min_value=0, max_value=7))
    if draw(st.booleans()):
        body = body[: draw(st.integers(min_value=0, max_value=len(body)))]
    reframe = draw(st.booleans())
    prefix = struct.pack(">i", len(body)) if reframe else original[:4]
    return prefix + bytes(body), reframe


def header_then_body(api_key: int, version: int, body: bytes, flexible: bool) -> bytes:
    correlation_id = 77
    header = struct.pack(">hhih", api_key, version, correlation_id, 6) + b"fuzzer"
    if flexible:
        header += b"\x00"  # no tagged fields
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


# ----------------------------------------------------------------------------- fuzz tests


@FUZZ_SETTINGS
@given(data=st.binary(max_size=300))
def test_random_bytes(env: Env, data: bytes) -> None:
    check_exchange(exchange(env.broker.bootstrap, data))


@FUZZ_SETTINGS
@given(
    pair=st.sampled_from(SERVED_PAIRS),
    body=st.binary(max_size=200),
    flexible=st.booleans(),
)
def test_valid_header_random_body(
    env: Env, pair: tuple[int, int], body: bytes, flexible: bool
) -> None:
    api_key, version = pair
    frames = check_exchange(
        exchange(env.broker.bootstrap, header_then_body(api_key, version, body, flexible))
    )
    for frame in frames:
        assert struct.unpack_from(">i", frame)[0] == 77


@FUZZ_SETTINGS
@given(mutation=mutated_request())
def test_mutated_valid_requests(env: Env, mutation: tuple[bytes, bool]) -> None:
    data, _ = mutation
    check_exchange(exchange(env.broker.bootstrap, data))


def test_unmutated_base_requests_are_answered(env: Env) -> None:
    """The starting points of the mutations are themselves good requests (acks=0 aside)."""
    for data in BASE_REQUESTS:
        result = exchange(env.broker.bootstrap, data, timeout=5)
        assert result.closed
        frames = check_exchange(result)
        expected_id = struct.unpack_from(">i", data, 8)[0]
        is_acks0 = data == BASE_REQUESTS[4]
        assert [struct.unpack_from(">i", f)[0] for f in frames] == (
            [] if is_acks0 else [expected_id]
        )


@FUZZ_SETTINGS
@given(
    api_key=st.one_of(
        st.integers(min_value=-(2**15), max_value=2**15 - 1),
        st.integers(min_value=0, max_value=80),
    ),
    version=st.one_of(
        st.integers(min_value=-(2**15), max_value=2**15 - 1),
        st.integers(min_value=0, max_value=20),
    ),
    body=st.binary(max_size=100),
    flexible=st.booleans(),
)
def test_unknown_apis_and_versions(
    env: Env, api_key: int, version: int, body: bytes, flexible: bool
) -> None:
    check_exchange(
        exchange(env.broker.bootstrap, header_then_body(api_key, version, body, flexible))
    )


@settings(max_examples=25, deadline=None, database=None)
@given(
    size=st.one_of(
        st.integers(min_value=LIMIT + 1, max_value=2**31 - 1),
        st.integers(min_value=-(2**31), max_value=-1),
        st.sampled_from([LIMIT + 1, 2**31 - 1, -1, -(2**31)]),
    ),
    tail=st.binary(max_size=64),
)
def test_huge_or_negative_sizes_close_at_once(env: Env, size: int, tail: bytes) -> None:
    """Refused from the size prefix alone: we do not half-close and send no body, yet the broker
    closes the connection promptly and answers nothing."""
    start = time.monotonic()
    result = exchange(
        env.broker.bootstrap, struct.pack(">i", size) + tail, half_close=False, timeout=3
    )
    assert result.closed
    assert result.received == b""
    assert time.monotonic() - start < 2


def test_frame_at_the_limit_is_read_not_refused(env: Env) -> None:
    """A frame of exactly socket.request.max.bytes is read (and, being junk, then closed) —
    the limit is not off by one."""
    request = codec.encode_request(
        5, None, ApiVersionsRequest(client_software_name="f", client_software_version="1")
    )[4:]
    padded = request + b"\x00" * (LIMIT - len(request))
    result = exchange(env.broker.bootstrap, struct.pack(">i", LIMIT) + padded, timeout=5)
    assert result.closed
    # ApiVersions v3 with trailing junk: kio reads the body it needs and ignores the rest,
    # so this is answered; a refused frame would get no answer.
    frames = check_exchange(result)
    assert [struct.unpack_from(">i", f)[0] for f in frames] == [5]


def test_many_frames_in_one_write_then_garbage(env: Env) -> None:
    """Good requests followed by garbage in the same segment: the good ones are answered, in
    order, before the connection is closed."""
    good = [
        codec.encode_request(
            i, "f", ApiVersionsRequest(client_software_name="f", client_software_version="1")
        )
        for i in range(10)
    ]
    result = exchange(env.broker.bootstrap, b"".join(good) + struct.pack(">i", -5) + b"junk")
    assert result.closed
    frames = check_exchange(result)
    assert [struct.unpack_from(">i", f)[0] for f in frames] == list(range(10))


# ----------------------------------------------------------------------------- afterwards


def test_zz_after_fuzzing_everything_still_works(env: Env) -> None:
    """Runs last in this module: the broker serves, the healthy client never failed, data from
    before the fuzzing reads back identical, and everything the healthy client was told was
    delivered is stored at the offset it was given."""
    assert_broker_serves(env)
    time.sleep(0.5)
    env.healthy.finish()
    assert env.healthy.failures == []
    assert env.healthy.roundtrips > 0
    assert len(env.healthy.delivered) > 20
    with Conn(env.broker.bootstrap) as conn:
        after = {p: read_partition(conn, HEALTHY, p) for p in (0, 1)}
    for partition in (0, 1):
        before = env.before[partition]
        assert after[partition][: len(before)] == before
        stored = dict(after[partition])
        for delivered_partition, offset, value in env.healthy.delivered:
            if delivered_partition == partition:
                assert stored.get(offset) == value
        # nothing but what we and the healthy client wrote
        expected = len(before) + sum(1 for p, _, _ in env.healthy.delivered if p == partition)
        assert len(after[partition]) == expected
    errors = [
        f"{r.name}: {r.getMessage()}"
        + ("".join(traceback.format_exception(*r.exc_info)[-3:]) if r.exc_info else "")
        for r in env.errors.records
    ]
    assert errors == [], errors
    assert env.broker.server is not None
    assert env.broker.server.connections_closed_for_errors > 0  # the fuzzing did reach it
