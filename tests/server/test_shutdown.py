"""A clean shutdown ends every long-polling fetch before it closes the logs.

A fetch waiting for data belongs to a connection that `stop` has just dropped. Left running, it
wakes later (at its deadline, or because the shutdown's own final syncs announced data) and
reads segment files that are closed by then: `samsa demo payments` logged such OSErrors
("Bad file descriptor") from an embedded broker's restart.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from pathlib import Path

from kio.schema.fetch.v12.request import FetchPartition, FetchRequest, FetchTopic
from kio.schema.types import TopicName
from kio.static.primitive import i32, i32Timedelta, i64

from samsa import config as broker_config
from samsa.broker.core import Broker, Endpoint
from samsa.log.storage import OsStorage
from samsa.protocol import codec
from samsa.server.run import bind, wall_clock_ms
from samsa.server.server import BrokerServer

LONG_POLL_MS = 5_000


def fetch_request(correlation_id: int, topic: str) -> bytes:
    request = FetchRequest(
        max_wait=i32Timedelta.parse(datetime.timedelta(milliseconds=LONG_POLL_MS)),
        min_bytes=i32(1),
        max_bytes=i32(1 << 20),
        topics=(
            FetchTopic(
                topic=TopicName(topic),
                partitions=(
                    FetchPartition(
                        partition=i32(0), fetch_offset=i64(0), partition_max_bytes=i32(1 << 20)
                    ),
                ),
            ),
        ),
        forgotten_topics_data=(),
    )
    return codec.encode_request(correlation_id, "test", request)


def test_stop_ends_long_polls_before_closing_the_logs(tmp_path: Path) -> None:
    async def scenario() -> tuple[float, list[tuple[bool, bool]]]:
        broker = Broker(
            broker_config.load({}), OsStorage(), str(tmp_path), wall_clock_ms, Endpoint("x", 1)
        )
        broker.open()
        broker.topics.create("quiet", 1, {}, wall_clock_ms())
        sock = bind("127.0.0.1", 0)
        server = BrokerServer(broker, sock)
        await server.start()
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(fetch_request(1, "quiet"))  # an empty log: the fetch waits for data
        await writer.drain()
        deadline = time.monotonic() + 5
        while not server._long_polls:
            assert time.monotonic() < deadline, "the fetch never started waiting"
            await asyncio.sleep(0.01)
        polls = list(server._long_polls)
        server.notify_data()  # the poll is woken in the same turn as the shutdown starts
        began = time.monotonic()
        await server.stop()
        took = time.monotonic() - began
        ended = [(poll.done(), poll.cancelled()) for poll in polls]  # before asyncio.run's cleanup
        writer.close()
        return took, ended

    took, ended = asyncio.run(scenario())
    assert ended == [(True, True)], "a long poll outlived the broker's stop"
    assert took < LONG_POLL_MS / 1000 / 2, f"stop waited {took:.1f} s for a long poll"
