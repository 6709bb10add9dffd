"""Hypothesis strategies for structurally valid requests of every API and version samsa serves
(`samsa.protocol.apis.SERVED`), with fields drawn from edge-heavy ranges
(tests/protocol/test_request_fuzz.py).

    request = draw(requests())   # a kio request dataclass, for codec.encode_request

Each request is built from kio's dataclass for its (api key, version): every field by its type
(int8..int64 at their extremes and around zero, null where the schema allows it, arrays of 0-3
elements drawn from small pools so duplicates are common, UUIDs, durations), and where a field's
name or domain type means something to the broker, from a pool that does: topic names that
exist, can be created, collide (`fz.c` and `fz_c`), are invalid (empty, `..`, 250 characters, a
path) or internal; group and transactional ids; config names and values; ListOffsets' special
timestamps; FindCoordinator key types. So a version added to SERVED is fuzzed without a change
here.

Bounded work per request: arrays hold at most `ARRAY_ELEMENTS_MAX` elements; partition counts
(CreateTopics `num_partitions`, CreatePartitions `count`) are at most `PARTITIONS_MAX`, and the
topics that can be created are the few valid names of `TOPIC_NAMES`, so the fuzzing as a whole
creates at most `CREATABLE_TOPICS * PARTITIONS_MAX` partitions however long it runs. (One
request asking for 10,000 partitions is a resource test of its own, not a fuzz case.) The
test's own topics are never named here, so nothing fuzzed may change their data.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
import types
import typing
import uuid
from typing import Any

from hypothesis import strategies as st
from kio.schema.types import BrokerId, GroupId, ProducerId, TopicName, TransactionalId
from kio.static.primitive import (
    Records,
    i8,
    i16,
    i32,
    i32Timedelta,
    i64,
    i64Timedelta,
)

from samsa.protocol import codec, versions
from samsa.protocol.apis import SERVED

from .fuzz_batches import batch_specs, build_batch

PARTITIONS_MAX = 50
ARRAY_ELEMENTS_MAX = 3
VALID_TOPICS = ("fz-a", "fz-b", "fz.c", "fz_c", "f" * 249)
CREATABLE_TOPICS = len(VALID_TOPICS)
EXISTING_TOPIC = VALID_TOPICS[0]  # created by the test before fuzzing
INVALID_TOPICS = ("", ".", "..", "f" * 250, "fz/../x", "fz x", "fzé", "-")
INTERNAL_TOPICS = ("__consumer_offsets", "__transaction_state")
TOPIC_NAMES = VALID_TOPICS + INVALID_TOPICS + INTERNAL_TOPICS

INT8 = (-(2**7), 2**7 - 1)
INT16 = (-(2**15), 2**15 - 1)
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


def _edges(bounds: tuple[int, int], *more: int) -> st.SearchStrategy[int]:
    """Integers of a type's range: its extremes and -1, 0, 1 (and `more`) most of the time."""
    low, high = bounds
    special = sorted({low, high, -1, 0, 1, *more})
    return st.one_of(st.sampled_from(special), st.integers(-2, 5), st.integers(low, high))


def _pool(*values: Any, text: bool = False) -> st.SearchStrategy[Any]:
    pool: st.SearchStrategy[Any] = st.sampled_from(values)
    return st.one_of(pool, st.text(max_size=8)) if text else pool


def _millis(*values: int) -> st.SearchStrategy[datetime.timedelta]:
    return st.sampled_from(values).map(lambda ms: datetime.timedelta(milliseconds=ms))


# Half the time the topic that exists, so requests reach past "unknown topic".
TOPICS = st.one_of(st.just(EXISTING_TOPIC), _pool(*TOPIC_NAMES))
GROUPS = _pool("fz-group", "fz-group-2", "", "g" * 300, text=True)
TRANSACTIONAL_IDS = _pool("fz-txn", "fz-txn-2", "", "t" * 300, text=True)
PARTITION_INDEXES = st.one_of(st.integers(-1, 3), st.sampled_from([*INT32, PARTITIONS_MAX - 1]))
PARTITION_COUNTS = st.one_of(st.integers(-2, PARTITIONS_MAX), st.sampled_from([INT32[0], 0]))
CONFIG_NAMES = _pool(
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "max.message.bytes",
    "message.timestamp.type",
    "message.timestamp.before.max.ms",
    "message.timestamp.after.max.ms",
    "min.insync.replicas",
    "compression.type",
    "no.such.config",
    "",
)
CONFIG_VALUES = _pool(
    "",
    "-1",
    "0",
    "1",
    "14",
    "1048576",
    "compact",
    "delete",
    "compact,delete",
    "LogAppendTime",
    "CreateTime",
    "gzip",
    "99999999999999999999",
    "abc",
    "1.5",
)
# ListOffsets: -1 latest, -2 earliest, -3 max timestamp, -4 earliest local, -5 earliest tiered.
LIST_OFFSETS_TIMESTAMPS = st.one_of(
    st.integers(-6, 1), st.sampled_from([*INT64, 1_704_067_200_000, int(time.time() * 1000)])
)
GROUP_STATES = _pool(
    "Stable",
    "Empty",
    "Dead",
    "PreparingRebalance",
    "CompletingRebalance",
    "Ongoing",
    "PrepareCommit",
    "CompleteAbort",
    "",
    "bogus",
)

# By field name (for names whose meaning does not depend on the class holding them).
BY_NAME: dict[str, st.SearchStrategy[Any]] = {
    "index": PARTITION_INDEXES,
    "partition_index": PARTITION_INDEXES,
    "partition": PARTITION_INDEXES,
    "partitions": PARTITION_INDEXES,
    "partition_indexes": PARTITION_INDEXES,
    "num_partitions": PARTITION_COUNTS,
    "count": PARTITION_COUNTS,
    "replication_factor": st.one_of(st.sampled_from([-1, 1]), st.sampled_from([0, 2, *INT16])),
    "acks": st.one_of(st.sampled_from([-1, 0, 1]), st.sampled_from([2, *INT16])),
    # Fetch sessions (KIP-227): mostly none (id 0, epoch -1 or 0), so fetches get answered.
    "session_id": st.one_of(st.just(0), _edges(INT32)),
    "session_epoch": st.one_of(st.sampled_from([-1, 0]), _edges(INT32)),
    "isolation_level": st.sampled_from([0, 1, 2, -1, *INT8]),
    "key_type": st.sampled_from([0, 1, 2, -1, *INT8]),
    "resource_type": st.sampled_from([2, 4, 8, 0, -1, *INT8]),
    "endpoint_type": st.sampled_from([1, 2, 0, -1, *INT8]),
    "producer_epoch": _edges(INT16),
    "timestamp": LIST_OFFSETS_TIMESTAMPS,
    "max_wait": _millis(0, 1, 100, -1, *INT32),
    "session_timeout": _millis(6000, 10_000, 1_800_000, 0, -1, INT32[1]),
    "rebalance_timeout": _millis(1000, 60_000, 0, -1, INT32[1]),
    "transaction_timeout": _millis(60_000, 900_000, 900_001, 0, 1, -1, INT32[1]),
    "timeout": _millis(1000, 30_000, 0, -1, *INT32),
    "retention_time": _millis(-1, 0, 1, 86_400_000, 10**15),
    "member_id": _pool("", "unknown", "m" * 300, text=True),
    "group_instance_id": _pool("fz-static", ""),
    "protocol_type": _pool("consumer", "", "connect"),
    "protocol_name": _pool("range", "roundrobin", "cooperative-sticky", ""),
    "client_software_name": _pool("samsa-fuzz", "", "-bad-", "a" * 300, text=True),
    "client_software_version": _pool("1.0", "", "1.0-", "v" * 300, text=True),
    "rack_id": _pool("", "rack-a"),
    "reason": _pool("", "r" * 300, text=True),
    "committed_metadata": _pool("", "m", "m" * 5000),
    "resource_name": st.one_of(TOPICS, _pool("1", "0", "-1", "")),
    "configuration_keys": CONFIG_NAMES,
    "key": st.one_of(GROUPS, TRANSACTIONAL_IDS),
    "coordinator_keys": st.one_of(GROUPS, TRANSACTIONAL_IDS),
    "state_filters": GROUP_STATES,
    "states_filter": GROUP_STATES,
}
# By (class, field) where the name alone is ambiguous.
BY_CLASS_FIELD: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("CreatableTopicConfig", "name"): CONFIG_NAMES,
    ("CreatableTopicConfig", "value"): CONFIG_VALUES,
    ("JoinGroupRequestProtocol", "name"): BY_NAME["protocol_name"],
}
# Arrays that are empty half the time: CreateTopics' explicit assignments exclude a partition
# count and a replication factor, so with them no topic would ever be created.
MOSTLY_EMPTY = {("CreatableTopic", "assignments")}


def _records() -> st.SearchStrategy[bytes | None]:
    """A Produce partition's records: absent, empty, or a batch from `fuzz_batches` (valid or
    mutated), timestamped now-ish and with producer ids that InitProducerId may have given."""
    now_ms = int(time.time() * 1000)
    built = st.builds(
        lambda spec, pid: build_batch(spec, now_ms, pid, 9).data, batch_specs(), st.integers(0, 3)
    )
    return st.one_of(st.none(), st.just(b""), built)


BY_TYPE: dict[Any, st.SearchStrategy[Any]] = {
    TopicName: TOPICS,
    GroupId: GROUPS,
    TransactionalId: TRANSACTIONAL_IDS,
    ProducerId: _edges(INT64, 1000, 2, 3),
    BrokerId: st.sampled_from([-1, 0, 1, 2, *INT32]),
    i8: _edges(INT8),
    i16: _edges(INT16),
    i32: _edges(INT32),
    i64: _edges(INT64),
    bool: st.booleans(),
    bytes: st.one_of(st.just(b""), st.binary(max_size=64)),
    str: _pool("", "x", "a" * 300, "é", "\x00", text=True),
    uuid.UUID: st.one_of(st.just(uuid.UUID(int=0)), st.uuids()),
    Records: _records(),
    i32Timedelta: _millis(0, 1, 1000, -1, *INT32),
    i64Timedelta: _millis(-1, 0, 1, 10**15),
}


@st.composite
def _arrays(draw: st.DrawFn, elements: st.SearchStrategy[Any]) -> tuple[Any, ...]:
    """1-3 elements (an empty array asks for no work), empty one time in six."""
    if draw(st.integers(0, 5)) == 5:
        return ()
    return tuple(draw(st.lists(elements, min_size=1, max_size=ARRAY_ELEMENTS_MAX)))


def _field(owner: str, name: str, kind: Any) -> st.SearchStrategy[Any]:
    args = typing.get_args(kind)
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return st.one_of(st.none(), _field(owner, name, inner))
    if origin is tuple:
        arrays = _arrays(_field(owner, name, args[0]))
        return st.one_of(st.just(()), arrays) if (owner, name) in MOSTLY_EMPTY else arrays
    if dataclasses.is_dataclass(kind):
        return entity(typing.cast(type[Any], kind))
    special = BY_CLASS_FIELD.get((owner, name), BY_NAME.get(name))
    if special is not None:
        return special
    if kind not in BY_TYPE:
        raise TypeError(f"no strategy for {owner}.{name}: {kind!r}")
    return BY_TYPE[kind]


_ENTITIES: dict[type[Any], st.SearchStrategy[Any]] = {}


def entity(cls: type[Any]) -> st.SearchStrategy[Any]:
    """Instances of a kio request (or nested) dataclass, every field drawn as above (each
    class's strategy built once)."""
    if cls not in _ENTITIES:
        hints = typing.get_type_hints(cls)
        fields = {
            f.name: _field(cls.__name__, f.name, hints[f.name]) for f in dataclasses.fields(cls)
        }
        _ENTITIES[cls] = st.builds(cls, **fields)
    return _ENTITIES[cls]


def request_class(api_key: int, version: int) -> type[Any]:
    schema = codec.request_type(api_key, version)
    if schema is None:
        raise LookupError(f"kio has no request schema for api {api_key} v{version}")
    return schema


def at_version(request: Any, version: int) -> Any:
    """`request`, a kio request of any version, as its API's request at `version` (fields
    matched by name, `samsa.protocol.versions`)."""
    return versions.convert(request, request_class(type(request).__api_key__, version))


def requests() -> st.SearchStrategy[Any]:
    """A request of any served API (each equally likely), at any served version."""
    return st.sampled_from(sorted(SERVED)).flatmap(
        lambda api: st.integers(SERVED[api].min, SERVED[api].max).flatmap(
            lambda version: entity(request_class(api, version))
        )
    )
