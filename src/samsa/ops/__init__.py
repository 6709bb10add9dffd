"""Operating a cluster, with Kafka's own tools' options and outputs, through the Kafka protocol
(confluent-kafka), so each works against any Kafka cluster as well as samsa:

- `samsa topics` (kafka-topics.sh, and kafka-configs.sh for topic configs): `topics_cli`;
- `samsa groups` (kafka-consumer-groups.sh): `groups_cli`, its offset resets planned in `reset`;
- `samsa produce` (kafka-console-producer.sh): `produce_cli`;
- `samsa consume` (kafka-console-consumer.sh): `consume_cli`.

Options, the first contact with the cluster and the table and JSON outputs are in `common`.
"""
