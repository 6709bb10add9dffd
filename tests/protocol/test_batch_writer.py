"""samsa's record batch writer against kio's: the same records give the same bytes.

`kio_batch` is how samsa built batches before (kio's `write_new_batch`, records timestamped
through `datetime`); the coordinators' batches, markers included, are on disk in that form, so
the direct writer must not differ from it by a byte.
"""

from __future__ import annotations

import datetime
import io
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.records.schema import NewRecordBatch, Record, RecordHeader
from kio.records.writers import write_new_batch
from kio.static.primitive import TZAwareMicros, i8, i16, i32, i64

from samsa.protocol.batch import CONTROL_FLAG, TRANSACTIONAL_FLAG, crc_ok, parse_header
from samsa.protocol.batch_writer import Headers, record_batch
from samsa.protocol.control import ABORT, COMMIT, marker_batch, marker_type


@dataclass(frozen=True)
class Spec:
    values: Sequence[bytes | None]
    timestamps_ms: Sequence[int]
    keys: Sequence[bytes | None] | None = None
    headers: Sequence[Headers] | None = None
    producer_id: int = -1
    producer_epoch: int = -1
    base_sequence: int = -1
    attributes: int = 0
    base_offset: int = 0

    def written(self) -> bytes:
        return record_batch(
            self.values,
            timestamp_ms=self.timestamps_ms[0],
            keys=self.keys,
            headers=self.headers,
            timestamps_ms=self.timestamps_ms,
            producer_id=self.producer_id,
            producer_epoch=self.producer_epoch,
            base_sequence=self.base_sequence,
            attributes=self.attributes,
            base_offset=self.base_offset,
        )


def kio_batch(spec: Spec) -> bytes:
    count = len(spec.values)
    keys = spec.keys if spec.keys is not None else [None] * count
    headers = spec.headers if spec.headers is not None else [()] * count
    records = tuple(
        Record(
            attributes=i8(0),
            timestamp=TZAwareMicros.parse(
                datetime.datetime.fromtimestamp(spec.timestamps_ms[i] / 1000, datetime.UTC)
            ),
            offset=i64(spec.base_offset + i),
            key=keys[i],
            value=spec.values[i],
            headers=tuple(RecordHeader(key=k, value=v) for k, v in headers[i]),
        )
        for i in range(count)
    )
    buffer = io.BytesIO()
    write_new_batch(
        buffer,
        NewRecordBatch(
            producer_id=i64(spec.producer_id),
            producer_epoch=i16(spec.producer_epoch),
            base_sequence=i32(spec.base_sequence),
            records=records,
            attributes=i16(spec.attributes),
        ),
    )
    return buffer.getvalue()


payloads = st.one_of(st.none(), st.binary(max_size=300))
# 1970 (where kio's datetime round trip loses a millisecond), today, and the far future.
timestamps = st.one_of(
    st.integers(0, 10**7), st.integers(1_500_000_000_000, 2_300_000_000_000), st.integers(0, 2**46)
)


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    count = draw(st.integers(1, 6))
    first = draw(timestamps)
    varied = draw(st.booleans())
    return Spec(
        values=draw(st.lists(payloads, min_size=count, max_size=count)),
        timestamps_ms=[first, *draw(st.lists(timestamps, min_size=count - 1, max_size=count - 1))]
        if varied
        else [first] * count,
        keys=draw(st.none() | st.lists(payloads, min_size=count, max_size=count)),
        headers=draw(
            st.none()
            | st.lists(
                st.lists(st.tuples(st.binary(max_size=20), payloads), max_size=3),
                min_size=count,
                max_size=count,
            )
        ),
        producer_id=draw(st.sampled_from([-1, 0, 2**63 - 1]) | st.integers(-1, 2**40)),
        producer_epoch=draw(st.integers(-1, 2**15 - 1)),
        base_sequence=draw(st.integers(-1, 2**31 - 1)),
        attributes=draw(st.sampled_from([0, TRANSACTIONAL_FLAG, 0x08]) | st.integers(0, 0x3F)),
        base_offset=draw(st.sampled_from([0, 1]) | st.integers(0, 2**62)),
    )


@settings(max_examples=400)
@given(specs())
def test_same_bytes_as_kio(spec: Spec) -> None:
    written = spec.written()
    assert written == kio_batch(spec)
    assert crc_ok(written, 0, parse_header(written))


@given(st.lists(payloads, min_size=1, max_size=4), timestamps)
def test_defaults_are_kio_defaults(values: list[bytes | None], timestamp_ms: int) -> None:
    expected = kio_batch(Spec(values, [timestamp_ms] * len(values)))
    assert record_batch(values, timestamp_ms=timestamp_ms) == expected


def test_large_records_take_multi_byte_lengths() -> None:
    spec = Spec(
        values=[b"v" * 70_000, b"w" * 200],
        timestamps_ms=[5, 6],
        keys=[b"k" * 129, None],
        headers=[[(b"h" * 300, b"x" * 20_000)], []],
        producer_id=7,
        producer_epoch=1,
        base_sequence=0,
    )
    assert spec.written() == kio_batch(spec)


@given(
    st.integers(0, 2**40),
    st.integers(0, 2**15 - 1),
    st.booleans(),
    st.integers(0, 2**31 - 1),
    st.integers(0, 2**62),
    timestamps,
)
def test_marker_same_bytes_as_kio(
    producer_id: int, epoch: int, commit: bool, coordinator_epoch: int, offset: int, now_ms: int
) -> None:
    marker = marker_batch(producer_id, epoch, commit, coordinator_epoch, offset, now_ms)
    spec = Spec(
        values=[b"\0\0" + coordinator_epoch.to_bytes(4, "big")],
        timestamps_ms=[now_ms],
        keys=[b"\0\0\0\1" if commit else b"\0\0\0\0"],
        producer_id=producer_id,
        producer_epoch=epoch,
        attributes=TRANSACTIONAL_FLAG | CONTROL_FLAG,
        base_offset=offset,
    )
    assert marker == kio_batch(spec)
    assert marker_type(marker) == (COMMIT if commit else ABORT)


def test_refuses_what_kio_refuses() -> None:
    with pytest.raises(ValueError):
        record_batch([], timestamp_ms=0)
    with pytest.raises(ValueError):
        record_batch([b"x"], timestamp_ms=-1)
    with pytest.raises(ValueError):
        record_batch([b"x", b"y"], timestamp_ms=0, timestamps_ms=[0, -5])
