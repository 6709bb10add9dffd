"""What the broker process spends per produced record: its CPU time (user + system, from
/proc), over one confluent-kafka producer's run with the broker benchmark's settings.

    python -m samsa.bench.produce_cpu [--records-100b N] [--records-1kb N]

A steadier measure of a change on the produce path than throughput on a shared machine: it
does not depend on how the client and the broker were scheduled, only on the work the broker
did. The counters tick every 10 ms, so runs need hundreds of milliseconds of broker CPU (the
defaults give 100-500 ms here); compare before and after interleaved, several times.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from confluent_kafka import Producer

from samsa.bench.broker import PRODUCER_CONFIG, broker_process, produce_all, wait_for_topic
from samsa.bench.streams import cpu_seconds


def cpu_us_per_record(value_bytes: int, records: int) -> float:
    with broker_process() as broker:
        assert broker.process is not None
        producer = Producer({"bootstrap.servers": broker.bootstrap, **PRODUCER_CONFIG})
        wait_for_topic(producer, "cpu")
        before = cpu_seconds(broker.process.pid)
        produce_all(producer, "cpu", os.urandom(value_bytes), records)
        return (cpu_seconds(broker.process.pid) - before) / records * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samsa.bench.produce_cpu", description=__doc__)
    parser.add_argument("--records-100b", type=int, default=500_000)
    parser.add_argument("--records-1kb", type=int, default=300_000)
    args = parser.parse_args(argv)
    figures = {
        "100": cpu_us_per_record(100, args.records_100b),
        "1024": cpu_us_per_record(1024, args.records_1kb),
    }
    print(json.dumps({"broker_cpu_us_per_record": figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
