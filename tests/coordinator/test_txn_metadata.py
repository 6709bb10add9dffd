"""A transaction-log record's text: what json.dumps wrote before, byte for byte, and what
`TxnMetadata.decode` reads back."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from samsa.coordinator.txn.metadata import TxnMetadata
from samsa.coordinator.txn.states import TxnState

ints = st.integers(-1, 2**63 - 1)
metadata = st.builds(
    TxnMetadata,
    transactional_id=st.text(),
    producer_id=ints,
    previous_producer_id=ints,
    producer_epoch=st.integers(-1, 2**15 - 1),
    last_producer_epoch=st.integers(-1, 2**15 - 1),
    timeout_ms=st.integers(0, 2**31 - 1),
    state=st.sampled_from(TxnState),
    partitions=st.frozensets(st.tuples(st.text(), st.integers(0, 2**31 - 1)), max_size=5),
    start_ms=ints,
    update_ms=ints,
)


def json_dumps(m: TxnMetadata) -> bytes:
    return json.dumps(
        {
            "transactional_id": m.transactional_id,
            "producer_id": m.producer_id,
            "previous_producer_id": m.previous_producer_id,
            "producer_epoch": m.producer_epoch,
            "last_producer_epoch": m.last_producer_epoch,
            "timeout_ms": m.timeout_ms,
            "state": m.state.value,
            "partitions": sorted([topic, partition] for topic, partition in m.partitions),
            "start_ms": m.start_ms,
            "update_ms": m.update_ms,
        },
        separators=(",", ":"),
    ).encode()


@given(metadata)
def test_encode_writes_what_json_dumps_wrote(m: TxnMetadata) -> None:
    assert m.encode() == json_dumps(m)
    assert TxnMetadata.decode(m.encode()) == m
