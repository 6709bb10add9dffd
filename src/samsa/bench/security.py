"""What TLS and SASL cost: confluent-kafka produce and consume throughput over SSL and SASL_SSL
as a ratio to PLAINTEXT, against one `samsa serve` with the three listeners, in the same run.

    python -m samsa.bench.security [--records N] [--value-bytes B] [--repeat K] [--json]

The broker runs as a subprocess (fresh temp data dir, throwaway certificates, one SCRAM user).
Each repeat measures every listener in turn (so drift in the machine's load falls on all of
them alike): `samsa.bench.broker`'s produce workload (acks=all, one partition, fresh topic,
from the first produce() to the last delivery report), and a consume of as many records by one
consumer (from assign() to the last record; the records are written first, untimed).
SASL_SSL authenticates with SCRAM-SHA-512, which costs once per connection. The figure per
listener is the median over the repeats; the ratio is its throughput over PLAINTEXT's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer

from samsa.bench.broker import (
    CONSUMER_CONFIG,
    PRODUCER_CONFIG,
    machine,
    produce,
    produce_all,
    timed_read,
    wait_for_topic,
)
from samsa.log.storage import OsStorage
from samsa.security import certs
from samsa.security.credentials import CredentialStore, from_password
from samsa.testing.process import BrokerProcess, free_port

LISTENERS = ("PLAINTEXT", "SSL", "SASL_SSL")
USER, PASSWORD = "bench", "bench-secret"


def _client(listener: str, files: certs.CertFiles) -> dict[str, Any]:
    config: dict[str, Any] = {"security.protocol": listener}
    if "SSL" in listener:
        config["ssl.ca.location"] = files.ca
    if "SASL" in listener:
        config.update(
            {"sasl.mechanism": "SCRAM-SHA-512", "sasl.username": USER, "sasl.password": PASSWORD}
        )
    return config


def consume(
    bootstrap: str, topic: str, records: int, value_bytes: int, client: dict[str, Any]
) -> float:
    """Seconds one consumer takes to read `records` records written first (untimed), from
    assign() on: the steady state of a connection, plus the one connection to the partition's
    leader that assign() opens (its TLS handshake and authentication included)."""
    config = {"bootstrap.servers": bootstrap, **client}
    producer = Producer({**config, **PRODUCER_CONFIG})
    wait_for_topic(producer, topic)
    produce_all(producer, topic, b"v" * value_bytes, records)
    consumer = Consumer({**config, **CONSUMER_CONFIG, "group.id": f"g-{topic}"})
    try:
        return timed_read(consumer, topic, 0, records)
    finally:
        consumer.close()


def run(records: int, value_bytes: int, repeat: int) -> dict[str, Any]:
    work = tempfile.mkdtemp(prefix="samsa-bench-security-")
    data_dir = f"{work}/data"
    files = certs.create(f"{work}/certs")
    store = CredentialStore(OsStorage(), data_dir)
    os.makedirs(data_dir)
    store.apply([(USER, "SCRAM-SHA-512", from_password("SCRAM-SHA-512", PASSWORD))], [])
    ports = {listener: free_port() for listener in LISTENERS}
    settings = {
        "listeners": ",".join(f"{name}://127.0.0.1:{port}" for name, port in ports.items()),
        "ssl.keystore.location": files.server_keystore,
    }
    broker = BrokerProcess(data_dir, settings, log_level="WARNING")
    produced: dict[str, list[float]] = {name: [] for name in LISTENERS}
    consumed: dict[str, list[float]] = {name: [] for name in LISTENERS}
    try:
        broker.start()
        for _ in range(repeat):
            for listener in LISTENERS:
                bootstrap = f"127.0.0.1:{ports[listener]}"
                client = _client(listener, files)
                topic = f"bench-{listener.lower()}-{uuid.uuid4().hex[:8]}"
                produced[listener].append(produce(bootstrap, topic, records, value_bytes, client))
                topic = f"bench-{listener.lower()}-{uuid.uuid4().hex[:8]}"
                consumed[listener].append(consume(bootstrap, topic, records, value_bytes, client))
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    result: dict[str, Any] = {
        "records": records,
        "value_bytes": value_bytes,
        "repeat": repeat,
        "machine": machine(),
        "listeners": {},
    }
    base_produce = statistics.median(produced["PLAINTEXT"])
    base_consume = statistics.median(consumed["PLAINTEXT"])
    for listener in LISTENERS:
        produce_s = statistics.median(produced[listener])
        consume_s = statistics.median(consumed[listener])
        result["listeners"][listener] = {
            "produce_mb_s": records * value_bytes / produce_s / 1e6,
            "consume_mb_s": records * value_bytes / consume_s / 1e6,
            "produce_ratio": base_produce / produce_s,
            "consume_ratio": base_consume / consume_s,
        }
    return result


def report_text(result: dict[str, Any]) -> str:
    lines = [
        f"{result['records']} records of {result['value_bytes']} B, median of "
        f"{result['repeat']}, one `samsa serve` with three listeners",
        f"{'listener':<10} {'produce MB/s':>13} {'ratio':>6} {'consume MB/s':>13} {'ratio':>6}",
    ]
    for name, row in result["listeners"].items():
        lines.append(
            f"{name:<10} {row['produce_mb_s']:>13.1f} {row['produce_ratio']:>6.2f} "
            f"{row['consume_mb_s']:>13.1f} {row['consume_ratio']:>6.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samsa.bench.security", description=__doc__)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--value-bytes", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.records, args.value_bytes, args.repeat)
    print(json.dumps(result, indent=1) if args.json else report_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
