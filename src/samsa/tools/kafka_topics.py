"""A stand-in for Kafka's `bin/kafka-topics.sh`, for librdkafka's tests that shell out to it
(`test_kafka_topics()` runs `$KAFKA_PATH/bin/kafka-topics.sh --bootstrap-server $BROKERS ...`).

It takes the arguments those tests pass: `--create --topic T --partitions N
--replication-factor R --config K=V...`, `--alter --topic T --partitions N`, `--delete --topic T`,
and does the same through the Admin API (confluent-kafka), as Kafka's script does since 3.0.
Exit status 1 with the broker's error on stderr, like the script.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

TIMEOUT_S = 30.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kafka-topics.sh")
    parser.add_argument("--bootstrap-server", required=True)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--create", action="store_true")
    action.add_argument("--alter", action="store_true")
    action.add_argument("--delete", action="store_true")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int)
    parser.add_argument("--replication-factor", type=int, default=-1)
    parser.add_argument("--config", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    admin = AdminClient({"bootstrap.servers": args.bootstrap_server, "log_level": 0})
    if args.create:
        configs = dict(setting.split("=", 1) for setting in args.config)
        topic = NewTopic(args.topic, args.partitions or -1, args.replication_factor, config=configs)
        futures = admin.create_topics([topic], operation_timeout=TIMEOUT_S)
    elif args.alter:
        if args.partitions is None:
            parser.error("--alter takes --partitions (the only change librdkafka's tests make)")
        futures = admin.create_partitions([NewPartitions(args.topic, args.partitions)])
    else:
        futures = admin.delete_topics([args.topic], operation_timeout=TIMEOUT_S)
    try:
        for future in futures.values():
            future.result(timeout=TIMEOUT_S)
    except Exception as error:  # the broker's error (a KafkaException), as the script prints it
        print(f"Error while executing topic command : {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
