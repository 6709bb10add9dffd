"""One consumer-group member, run as a subprocess by the group tests so that it can be killed
with SIGKILL (a crash: no LeaveGroup, heartbeats just stop) or stopped with SIGTERM (close():
a clean LeaveGroup).

    python tests/groups/member.py CLIENT BOOTSTRAP GROUP TOPIC SESSION_TIMEOUT_MS

CLIENT is confluent, aiokafka or kafka-python. The member subscribes, commits synchronously
after each batch it processed (at-least-once), and prints one line per event, flushed:

    seen <partition> <offset> <value>
    committed
    closed
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Iterable

from samsa.testing.topics import placed, value_of

stopping = threading.Event()


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def report(records: Iterable[tuple[int, int, bytes]]) -> None:
    lines = [f"seen {p} {o} {v.decode()}" for p, o, v in records]
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()


def run_confluent(bootstrap: str, group: str, topic: str, session_ms: int) -> None:
    import confluent_kafka

    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": "member-confluent",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": session_ms,
            "heartbeat.interval.ms": 300,
            "log_level": 0,
        }
    )
    consumer.subscribe([topic])
    while not stopping.is_set():
        messages = consumer.consume(500, 0.2)
        batch = []
        for message in messages:
            if message.error() is not None:
                say(f"error {message.error()}")
                continue
            batch.append((*placed(message), value_of(message)))
        if batch:
            report(batch)
            try:
                consumer.commit(asynchronous=False)
                say("committed")
            except confluent_kafka.KafkaException as exc:
                say(f"commit-failed {exc}")  # a rebalance: the records come again
    consumer.close()
    say("closed")


def run_kafka_python(bootstrap: str, group: str, topic: str, session_ms: int) -> None:
    import kafka
    from kafka.errors import CommitFailedError, KafkaError

    consumer = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id="member-kafka-python",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=session_ms,
        heartbeat_interval_ms=300,
    )
    consumer.subscribe([topic])
    while not stopping.is_set():
        polled = consumer.poll(timeout_ms=200, max_records=500)
        batch = [(m.partition, m.offset, m.value) for ms in polled.values() for m in ms]
        if batch:
            report(batch)
            try:
                consumer.commit()
                say("committed")
            except (CommitFailedError, KafkaError) as exc:
                say(f"commit-failed {exc!r}")
    consumer.close()
    say("closed")


def run_aiokafka(bootstrap: str, group: str, topic: str, session_ms: int) -> None:
    import aiokafka
    from aiokafka.errors import CommitFailedError, KafkaError

    async def main() -> None:
        consumer = aiokafka.AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id="member-aiokafka",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=300,
        )
        await consumer.start()
        while not stopping.is_set():
            polled = await consumer.getmany(timeout_ms=200, max_records=500)
            batch = [(tp.partition, m.offset, m.value) for tp, ms in polled.items() for m in ms]
            if batch:
                report(batch)
                try:
                    await consumer.commit()
                    say("committed")
                except (CommitFailedError, KafkaError) as exc:
                    say(f"commit-failed {exc!r}")
        await consumer.stop()
        say("closed")

    asyncio.run(main())


CLIENTS = {
    "confluent": run_confluent,
    "kafka-python": run_kafka_python,
    "aiokafka": run_aiokafka,
}


def main() -> None:
    client, bootstrap, group, topic, session_ms = sys.argv[1:6]
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    say("started")
    CLIENTS[client](bootstrap, group, topic, int(session_ms))


if __name__ == "__main__":
    main()
