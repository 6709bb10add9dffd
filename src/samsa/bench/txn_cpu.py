"""The broker's CPU per one-record transaction, without sockets: frames in, answers out.

    python -m samsa.bench.txn_cpu [--transactions N] [--fsync]

An in-process `Broker` on a temp data dir is handed the frames a transactional producer sends
for each transaction (AddPartitionsToTxn, Produce of one 100 B record, EndTxn(commit)),
encoded beforehand; the durability driver runs each request's continuations, with each round's
fsyncs done inline (`--fsync`) or skipped (the default, so the figure is the interpreter's work:
decoding, the handlers, the coordinator, the log, the commit marker, encoding answers). It
prints the mean time per transaction. To measure an older source tree with the same script,
run this file with that tree's `src` first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from typing import Any

from kio.schema.add_partitions_to_txn.v3.request import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnTopic,
)
from kio.schema.end_txn.v3.request import EndTxnRequest
from kio.schema.types import ProducerId, TopicName, TransactionalId
from kio.static.primitive import i16, i32

from samsa.broker.core import Broker, Endpoint
from samsa.broker.outcomes import AwaitDurable, RawFrame, Reply
from samsa.config import BrokerConfig
from samsa.durability import Driver
from samsa.log.storage import OsStorage
from samsa.protocol import codec
from samsa.server.run import wall_clock_ms
from samsa.sim.clients import batch, init_producer_id_call, produce_call

TOPIC = "bench-txn-cpu"
TRANSACTIONAL_ID = "bench-txn-cpu"
WARMUP = 200


class Bench:
    def __init__(self, data_dir: str, fsync: bool) -> None:
        self.broker = Broker(
            BrokerConfig(), OsStorage(), data_dir, wall_clock_ms, Endpoint("localhost", 9092)
        )
        self.broker.open()
        self.broker.topics.create(TOPIC, 1, {}, wall_clock_ms())
        self.driver: Driver[int] = Driver(self.broker.take_background)
        self.fsync = fsync
        self.correlation_id = 0
        self.sequence = 0
        init = init_producer_id_call(TRANSACTIONAL_ID, 60_000).request
        answer = self.call(codec.encode_request(0, "bench", init))
        self.producer_id, self.epoch = int(answer.producer_id), int(answer.producer_epoch)

    def sync_all(self) -> None:
        while logs := self.driver.take_dirty():
            for log in logs:
                point = log.sync_point()
                if self.fsync:
                    point.run()
                log.complete_sync(point)
                self.driver.synced(log, point)

    def call(self, frame: bytes) -> Any:
        """One request in; its answer once every write it waits for is durable."""
        self.correlation_id += 1
        outcome = self.broker.handle_frame(frame[4:])
        if isinstance(outcome, Reply):
            if not isinstance(outcome.payload, RawFrame):
                codec.encode_response_parts(outcome.correlation_id, outcome.payload)
            return outcome.payload
        if not isinstance(outcome, AwaitDurable) or outcome.finish is None:
            raise TypeError(f"unexpected outcome {outcome!r}")
        self.driver.respond(self.correlation_id, outcome.waits, outcome.finish)
        finished = self.driver.run()
        while not finished:
            self.sync_all()
            finished = self.driver.run()
        self.sync_all()  # background work: the commit marker, CompleteCommit
        self.driver.run()
        ((_, payload),) = finished
        codec.encode_response_parts(self.correlation_id, payload)
        return payload

    def frames(self, count: int) -> list[bytes]:
        """The requests of `count` transactions, in order."""
        add = AddPartitionsToTxnRequest(
            v3_and_below_transactional_id=TransactionalId(TRANSACTIONAL_ID),
            v3_and_below_producer_id=ProducerId(self.producer_id),
            v3_and_below_producer_epoch=i16(self.epoch),
            v3_and_below_topics=(
                AddPartitionsToTxnTopic(name=TopicName(TOPIC), partitions=(i32(0),)),
            ),
        )
        end = EndTxnRequest(
            transactional_id=TransactionalId(TRANSACTIONAL_ID),
            producer_id=ProducerId(self.producer_id),
            producer_epoch=i16(self.epoch),
            committed=True,
        )
        frames = []
        for _ in range(count):
            records = batch(
                [b"x" * 100], self.producer_id, self.epoch, self.sequence, True, wall_clock_ms()
            )
            self.sequence += 1
            produce = produce_call(TRANSACTIONAL_ID, TOPIC, 0, records).request
            frames += [codec.encode_request(1, "bench", request) for request in (add, produce, end)]
        return frames

    def seconds(self, count: int) -> float:
        frames = self.frames(count)
        start = time.perf_counter()
        for frame in frames:
            self.call(frame)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samsa.bench.txn_cpu", description=__doc__)
    parser.add_argument("--transactions", type=int, default=2000)
    parser.add_argument("--fsync", action="store_true", help="fsync each round's logs")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="samsa-bench-txn-cpu-") as data_dir:
        bench = Bench(data_dir, args.fsync)
        bench.seconds(WARMUP)
        elapsed = bench.seconds(args.transactions)
        bench.broker.close()
    per_txn_us = elapsed / args.transactions * 1e6
    print(f"{per_txn_us:.0f} µs per transaction ({'with' if args.fsync else 'without'} fsync)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
