"""The API version table: which (api key, version) pairs samsa serves and advertises.

A version is listed here only when its handler fully implements it. See
shared/reference/kafka-eos.md section 4 for the ranges each client negotiates.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ApiKey(IntEnum):
    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    JOIN_GROUP = 11
    HEARTBEAT = 12
    LEAVE_GROUP = 13
    SYNC_GROUP = 14
    DESCRIBE_GROUPS = 15
    LIST_GROUPS = 16
    SASL_HANDSHAKE = 17
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    DELETE_RECORDS = 21
    INIT_PRODUCER_ID = 22
    OFFSET_FOR_LEADER_EPOCH = 23
    ADD_PARTITIONS_TO_TXN = 24
    ADD_OFFSETS_TO_TXN = 25
    END_TXN = 26
    WRITE_TXN_MARKERS = 27
    TXN_OFFSET_COMMIT = 28
    DESCRIBE_ACLS = 29
    CREATE_ACLS = 30
    DELETE_ACLS = 31
    DESCRIBE_CONFIGS = 32
    ALTER_CONFIGS = 33
    DESCRIBE_LOG_DIRS = 35
    SASL_AUTHENTICATE = 36
    CREATE_PARTITIONS = 37
    DELETE_GROUPS = 42
    INCREMENTAL_ALTER_CONFIGS = 44
    OFFSET_DELETE = 47
    DESCRIBE_USER_SCRAM_CREDENTIALS = 50
    ALTER_USER_SCRAM_CREDENTIALS = 51
    DESCRIBE_CLUSTER = 60
    DESCRIBE_PRODUCERS = 61
    DESCRIBE_TRANSACTIONS = 65
    LIST_TRANSACTIONS = 66
    DESCRIBE_TOPIC_PARTITIONS = 75
    CONSUMER_GROUP_HEARTBEAT = 68
    CONSUMER_GROUP_DESCRIBE = 69


@dataclass(frozen=True, slots=True)
class VersionRange:
    min: int
    max: int

    def __contains__(self, version: object) -> bool:
        return isinstance(version, int) and self.min <= version <= self.max


# The lowest versions are Kafka 3.9's, which Kafka 4.0 raised (KIP-896) while clients in the
# field still send them (Sarama 1.22: DescribeConfigs v0, OffsetCommit v1); kio lacks their
# classes, so `samsa.protocol.legacy` has them. Except where the records of old message formats
# would need down-conversion: Produce v0-2 and Fetch v0-3 stay out, as in Kafka 4.0.
SERVED: dict[int, VersionRange] = {
    ApiKey.PRODUCE: VersionRange(3, 10),
    # Fetch stops at 12: v13+ addresses topics by id only.
    ApiKey.FETCH: VersionRange(4, 12),
    ApiKey.LIST_OFFSETS: VersionRange(0, 7),
    ApiKey.METADATA: VersionRange(0, 12),
    ApiKey.API_VERSIONS: VersionRange(0, 3),
    ApiKey.INIT_PRODUCER_ID: VersionRange(0, 4),
    ApiKey.CREATE_TOPICS: VersionRange(0, 7),
    ApiKey.DELETE_TOPICS: VersionRange(0, 6),
    ApiKey.OFFSET_FOR_LEADER_EPOCH: VersionRange(0, 4),
    ApiKey.DESCRIBE_CONFIGS: VersionRange(0, 4),
    ApiKey.ALTER_CONFIGS: VersionRange(0, 2),
    ApiKey.INCREMENTAL_ALTER_CONFIGS: VersionRange(0, 1),
    ApiKey.CREATE_PARTITIONS: VersionRange(0, 3),
    ApiKey.DESCRIBE_CLUSTER: VersionRange(0, 1),
    ApiKey.FIND_COORDINATOR: VersionRange(0, 4),
    # AddPartitionsToTxn v4+ is the broker-to-coordinator verification API (KIP-890).
    ApiKey.ADD_PARTITIONS_TO_TXN: VersionRange(0, 3),
    ApiKey.ADD_OFFSETS_TO_TXN: VersionRange(0, 3),
    # EndTxn v5 is transaction version 2 (KIP-890 part 2), which samsa does not implement.
    ApiKey.END_TXN: VersionRange(0, 4),
    ApiKey.WRITE_TXN_MARKERS: VersionRange(0, 1),
    ApiKey.DESCRIBE_PRODUCERS: VersionRange(0, 0),
    ApiKey.DESCRIBE_TRANSACTIONS: VersionRange(0, 0),
    ApiKey.LIST_TRANSACTIONS: VersionRange(0, 1),
    # OffsetCommit v9 and OffsetFetch v9 carry KIP-848 member epochs; OffsetFetch v8 is the
    # multi-group layout. OffsetFetch v10 (topic ids) is not served.
    ApiKey.OFFSET_COMMIT: VersionRange(0, 9),
    ApiKey.OFFSET_FETCH: VersionRange(0, 9),
    ApiKey.JOIN_GROUP: VersionRange(0, 9),
    ApiKey.HEARTBEAT: VersionRange(0, 4),
    ApiKey.LEAVE_GROUP: VersionRange(0, 5),
    ApiKey.SYNC_GROUP: VersionRange(0, 5),
    ApiKey.DESCRIBE_GROUPS: VersionRange(0, 5),
    ApiKey.LIST_GROUPS: VersionRange(0, 5),
    ApiKey.TXN_OFFSET_COMMIT: VersionRange(0, 3),
    ApiKey.DELETE_GROUPS: VersionRange(0, 2),
    ApiKey.OFFSET_DELETE: VersionRange(0, 0),
    ApiKey.DELETE_RECORDS: VersionRange(0, 2),
    # DescribeLogDirs v0 as Kafka 3.9 served it (4.0 dropped it); v5 adds is_cordoned (KIP-1066).
    ApiKey.DESCRIBE_LOG_DIRS: VersionRange(0, 5),
    ApiKey.DESCRIBE_TOPIC_PARTITIONS: VersionRange(0, 0),
    # The consumer group protocol (KIP-848).
    ApiKey.CONSUMER_GROUP_HEARTBEAT: VersionRange(0, 1),
    ApiKey.CONSUMER_GROUP_DESCRIBE: VersionRange(0, 1),
    ApiKey.SASL_HANDSHAKE: VersionRange(0, 1),
    ApiKey.SASL_AUTHENTICATE: VersionRange(0, 2),
    ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS: VersionRange(0, 0),
    ApiKey.ALTER_USER_SCRAM_CREDENTIALS: VersionRange(0, 0),
    # v0 of the three (LITERAL patterns only) as Kafka 3.9 served it; 4.0 dropped it (KIP-896).
    ApiKey.DESCRIBE_ACLS: VersionRange(0, 3),
    ApiKey.CREATE_ACLS: VersionRange(0, 3),
    ApiKey.DELETE_ACLS: VersionRange(0, 3),
}

# KAFKA-18659: librdkafka before 2.10 silently drops compression when the broker advertises a
# Produce minimum above 0, so Kafka 4.0 advertises 0 and still rejects 0-2. samsa does the same.
ADVERTISED: dict[int, VersionRange] = {**SERVED, ApiKey.PRODUCE: VersionRange(0, 10)}


def is_served(api_key: int, version: int) -> bool:
    served = SERVED.get(api_key)
    return served is not None and version in served
