"""samsa: a Kafka-wire-compatible broker and exactly-once toolkit."""
