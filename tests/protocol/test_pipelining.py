"""Many requests on one connection before reading: answers come back in request order, and a
client that never reads costs the broker at most `queued.max.requests` pending responses."""

from __future__ import annotations

import os
import time

from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.errors import ErrorCode
from kio.schema.fetch.v12.request import FetchRequest
from kio.schema.metadata.v12.request import MetadataRequest
from kio.schema.produce.v9.request import ProduceRequest

from samsa.protocol import codec
from samsa.testing import EmbeddedBroker

from .wire import Conn, create_topics_request, fetch_request, make_batch, produce_request


def test_fifty_mixed_requests_answered_in_order(broker: EmbeddedBroker) -> None:
    topic = "pipelined"
    with Conn(broker.bootstrap) as conn:
        assert conn.request(create_topics_request(topic, 1)).topics[0].error_code == 0
        kinds: list[type] = []
        payloads: list[ProduceRequest | MetadataRequest | ApiVersionsRequest] = []
        for i in range(50):
            match i % 3:
                case 0:
                    payloads.append(produce_request(topic, {0: make_batch([b"m%d" % i, b"x"])}))
                case 1:
                    payloads.append(
                        MetadataRequest(
                            topics=None,
                            allow_auto_topic_creation=False,
                            include_topic_authorized_operations=False,
                        )
                    )
                case _:
                    payloads.append(
                        ApiVersionsRequest(client_software_name="p", client_software_version="1")
                    )
            kinds.append(type(payloads[-1]))
        # Non-monotonic correlation ids: the broker must echo, not count.
        ids = [(i * 7919) % 100_003 - 50_000 for i in range(50)]
        wire = b"".join(
            codec.encode_request(cid, "p", payload)
            for cid, payload in zip(ids, payloads, strict=True)
        )
        conn.send_raw(wire)  # everything at once, one write
        base_offsets = []
        for cid, kind in zip(ids, kinds, strict=True):
            got, response = conn.recv(kind)
            assert got == cid
            if kind is ProduceRequest:
                [partition] = response.responses[0].partition_responses
                assert partition.error_code == ErrorCode.none
                base_offsets.append(partition.base_offset)
            elif kind is MetadataRequest:
                assert topic in {t.name for t in response.topics}
            else:
                assert response.error_code == ErrorCode.none
        # Produce is applied in arrival order: two records per batch.
        assert base_offsets == [2 * i for i in range(17)]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_client_that_does_not_read_is_bounded_then_served_in_order(tmp_path: object) -> None:
    """200 pipelined fetches of ~900 KB each (~180 MB of responses) with queued.max.requests=2:
    while the client reads nothing the broker holds only a few responses, and once it reads,
    every response arrives, in order."""
    topic = "bounded"
    count = 200
    value = os.urandom(900_000)
    settings = {"queued.max.requests": "2"}
    with (
        EmbeddedBroker(data_dir=f"{tmp_path}/data", settings=settings) as bounded,
        Conn(bounded.bootstrap, timeout_s=30) as conn,
    ):
        assert conn.request(create_topics_request(topic, 1)).topics[0].error_code == 0
        produced = conn.request(produce_request(topic, {0: make_batch([value])}))
        assert produced.responses[0].partition_responses[0].error_code == ErrorCode.none
        conn.request(fetch_request(topic, [0]))  # warm up caches before measuring
        before = _rss_bytes()
        ids = [conn.send(fetch_request(topic, [0])) for _ in range(count)]
        time.sleep(2.0)  # let the broker do all it is willing to do
        grown = _rss_bytes() - before
        assert grown < 60 * 1024 * 1024, f"broker grew {grown / 2**20:.0f} MiB for a stalled client"
        for cid in ids:
            got, response = conn.recv(FetchRequest)
            assert got == cid
            [partition] = response.responses[0].partitions
            assert partition.error_code == ErrorCode.none
            assert value in bytes(partition.records)
