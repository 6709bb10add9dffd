"""Hypothesis strategies for produced record batches with mutated fields, and what a broker must
answer to each (tests/protocol/test_request_fuzz.py).

    spec = draw(batch_specs())
    built = build_batch(spec, now_ms, producer_id, api_version)
    built.data    # the batch, CRC recomputed after the mutations (unless the spec says not)
    built.expect  # ACCEPT, REFUSE with one of some codes, or EITHER (producer state decides)

A spec starts as a batch any client could send (1 to 6 records; keys, values and headers of edge
sizes, null and empty; any codec; idempotent or not) and may carry mutations. Each mutation is
classified by the rule that governs it, so the oracle is the rules, not samsa's code:

- kept valid: padded varints (a varint may take up to 5 bytes, a varlong 10, whatever its
  value), any record attributes (unused in v2), any base offset (Kafka counts from
  lastOffsetDelta), partition leader epoch or header max timestamp (the broker overwrites or
  recomputes them), unused attribute bits 7-15, any timestamp up to an hour ahead.
- refused, with the codes Kafka's LogValidator and DefaultRecord give (or samsa's stricter,
  documented ones in docs/security.md: key/value lengths below -1, offset deltas other than
  0..n-1): record count or lastOffsetDelta not matching the records, a record's length, key,
  value or header sizes that do not fit it, 6-byte varints, control flag, unknown or mismatched
  codec, garbage or truncated compressed data, inflation past the bound, timestamps more than
  an hour ahead, wrong CRC, wrong batch length, bytes after the batch.
- either: producer state decides (a sequence other than 0 or an epoch below 0 for a new
  producer id, the transactional flag outside a transaction), as does int64 timestamp overflow
  (Java wraps it; samsa refuses or accepts, but must not fail).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field, replace

import crc32c
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode

from samsa.protocol.batch import (
    COMPRESSION_MASK,
    CONTROL_FLAG,
    CRC_START,
    HEADER,
    HEADER_BYTES,
    LOG_OVERHEAD,
    TIMESTAMP_TYPE_MASK,
    TRANSACTIONAL_FLAG,
)
from samsa.protocol.compression import GZIP, LZ4, NONE, SNAPPY, ZSTD
from samsa.testing.poison import compress, zigzag_varint, zstd_bomb

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
VARINT_BYTES_MAX = 5  # Kafka's ByteUtils.readVarint
VARLONG_BYTES_MAX = 10  # ByteUtils.readVarlong
NO_TIMESTAMP = -1
DELETE_HORIZON_FLAG = 0x40  # KIP-534: set by the log cleaner, never by a producer
UNUSED_FLAGS = 0xFF80
# log.message.timestamp.after.max.ms, the broker's default (KIP-937, Kafka 4.0)
TIMESTAMP_AFTER_MAX_MS = 3_600_000
# The test's clock and the broker's are one machine's, read a little apart.
CLOCK_SLACK_MS = 60_000
ZSTD_PRODUCE_VERSION_MIN = 7
# A little over message.decompressed.max.bytes (16 MiB): refused, without inflating it here.
BOMB_INFLATED_BYTES = 32 << 20

LENGTH_CODES = (ErrorCode.corrupt_message, ErrorCode.invalid_record, ErrorCode.message_too_large)
PRODUCER_CODES = (
    ErrorCode.out_of_order_sequence_number,
    ErrorCode.invalid_producer_epoch,
    ErrorCode.unknown_producer_id,
    ErrorCode.invalid_txn_state,
    ErrorCode.invalid_producer_id_mapping,
    ErrorCode.invalid_record,
)


class Verdict(enum.Enum):
    ACCEPT = "accept"
    REFUSE = "refuse"
    EITHER = "either"


@dataclass(frozen=True, slots=True)
class Expect:
    verdict: Verdict
    codes: frozenset[ErrorCode]  # what a refusal may answer
    reasons: tuple[str, ...]  # the mutations that decided it, for failure messages


@dataclass
class _Rules:
    """Collects what each mutation implies; a definite refusal wins over everything."""

    refusals: list[str] = field(default_factory=list)
    maybes: list[str] = field(default_factory=list)
    codes: set[ErrorCode] = field(default_factory=set)

    def refuse(self, reason: str, *codes: ErrorCode) -> None:
        self.refusals.append(reason)
        self.codes.update(codes)

    def either(self, reason: str, *codes: ErrorCode) -> None:
        self.maybes.append(reason)
        self.codes.update(codes)

    def expect(self) -> Expect:
        if self.refusals:
            return Expect(Verdict.REFUSE, frozenset(self.codes), tuple(self.refusals + self.maybes))
        if self.maybes:
            return Expect(Verdict.EITHER, frozenset(self.codes), tuple(self.maybes))
        return Expect(Verdict.ACCEPT, frozenset(), ())


# ----------------------------------------------------------------------------- records


class Damage(enum.Enum):
    """One way to make a record unparseable (at most one per record, so two cannot cancel)."""

    LENGTH = "record length off by `amount`"
    KEY_NEGATIVE = "key length below -1"
    KEY_PAST_END = "key length past the record's end"
    VALUE_NEGATIVE = "value length below -1"
    VALUE_PAST_END = "value length past the record's end"
    HEADERS_NEGATIVE = "negative header count"
    HEADERS_PAST_END = "more headers than bytes"
    HEADER_KEY_NEGATIVE = "negative header key length"
    TRAILING_BYTES = "bytes after the headers, inside the record length"
    OVERLONG_VARINT = "a 6-byte offset delta varint"
    OFFSET_DELTA = "offset delta out of sequence"


@dataclass(frozen=True, slots=True)
class RecordSpec:
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[bytes, bytes | None], ...] = ()
    attributes: int = 0  # unused in v2: any value is valid
    timestamp_delta: int = 0
    padding: int = 0  # continuation bytes added to each varint that has room (still valid)
    damage: Damage | None = None
    amount: int = 1  # the damage's size, where it has one


def _varint(value: int, padding: int, bytes_max: int) -> bytes:
    """Zigzag `value`, padded with up to `padding` redundant continuation bytes while it stays
    within `bytes_max` bytes: 0 as 80 80 00, say. Kafka reads these as the same value."""
    raw = bytearray(zigzag_varint(value))
    extra = min(padding, bytes_max - len(raw))
    if extra > 0:
        raw[-1] |= 0x80
        raw += b"\x80" * (extra - 1) + b"\x00"
    return bytes(raw)


def _sized(data: bytes | None, padding: int) -> bytes:
    if data is None:
        return _varint(-1, padding, VARINT_BYTES_MAX)
    return _varint(len(data), padding, VARINT_BYTES_MAX) + data


def record_bytes(spec: RecordSpec, index: int) -> bytes:
    """One record as DefaultRecord lays it out, with the spec's padding and damage."""
    pad = spec.padding
    damage = spec.damage
    offset_delta = index + spec.amount if damage is Damage.OFFSET_DELTA else index
    delta = _varint(offset_delta, pad, VARINT_BYTES_MAX)
    if damage is Damage.OVERLONG_VARINT:  # the same value in 6 bytes: continuation bits, then 0
        canonical = zigzag_varint(offset_delta)
        continued = bytes(b | 0x80 for b in canonical) + b"\x80" * (5 - len(canonical))
        delta = continued + b"\x00"
    head = bytes([spec.attributes & 0xFF]) + _varint(spec.timestamp_delta, pad, VARLONG_BYTES_MAX)
    head += delta
    key = _sized(spec.key, pad)
    value = _sized(spec.value, pad)
    headers = b"".join(_sized(k, pad) + _sized(v, pad) for k, v in spec.headers)
    count = _varint(len(spec.headers), pad, VARINT_BYTES_MAX)
    if damage is Damage.KEY_NEGATIVE:
        key = zigzag_varint(-1 - spec.amount) + (spec.key or b"")
    elif damage is Damage.KEY_PAST_END:
        rest = len(value) + len(count) + len(headers) + len(spec.key or b"")
        key = zigzag_varint(rest + spec.amount) + (spec.key or b"")
    elif damage is Damage.VALUE_NEGATIVE:
        value = zigzag_varint(-1 - spec.amount) + (spec.value or b"")
    elif damage is Damage.VALUE_PAST_END:
        rest = len(count) + len(headers) + len(spec.value or b"")
        value = zigzag_varint(rest + spec.amount) + (spec.value or b"")
    elif damage is Damage.HEADERS_NEGATIVE:
        count = zigzag_varint(-spec.amount)
    elif damage is Damage.HEADERS_PAST_END:
        count = zigzag_varint(len(headers) + spec.amount)  # each header takes 2 bytes or more
    elif damage is Damage.HEADER_KEY_NEGATIVE:
        first_value = spec.headers[0][1] if spec.headers else b""
        bad = zigzag_varint(-spec.amount) + _sized(first_value, 0)
        count = zigzag_varint(len(spec.headers) or 1)
        headers = bad + b"".join(_sized(k, pad) + _sized(v, pad) for k, v in spec.headers[1:])
    body = head + key + value + count + headers
    if damage is Damage.TRAILING_BYTES:
        body += b"\x00" * spec.amount
    length = len(body) + (spec.amount if damage is Damage.LENGTH else 0)
    return _varint(length, pad, VARINT_BYTES_MAX) + body


def _record_rules(records: tuple[RecordSpec, ...], rules: _Rules) -> None:
    for index, record in enumerate(records):
        if record.damage is not None:
            rules.refuse(f"record {index}: {record.damage.value}", ErrorCode.invalid_record)


# ----------------------------------------------------------------------------- batches


class Packing(enum.Enum):
    """What happens to the (possibly compressed) records section."""

    AS_IS = "as is"
    GARBAGE = "garbage instead of the compressed records"
    TRUNCATED = "records section cut short, batch length fixed"
    BOMB = "a zstd frame inflating past message.decompressed.max.bytes"


@dataclass(frozen=True, slots=True)
class BatchSpec:
    records: tuple[RecordSpec, ...]
    codec: int = NONE  # how the records are compressed
    declared_codec: int | None = None  # what the attributes say, when not `codec`
    flags: int = 0  # attribute bits 3-15
    base_offset: int = 0
    partition_leader_epoch: int = -1
    magic: int = 2
    count: int | None = None  # the header's record count, when not the number of records
    last_offset_delta: int | None = None  # when not the number of records - 1
    base_timestamp_ms: int = 0  # from now, unless `timestamp_absolute`
    timestamp_absolute: bool = False
    max_timestamp: int | None = None  # the header's, when not the right one
    idempotent: bool = False  # a fresh producer id (the test supplies it)
    producer_id: int = -1  # when not idempotent: -1 or another negative id
    producer_epoch: int = -1
    base_sequence: int = -1
    packing: Packing = Packing.AS_IS
    garbage: bytes = b""  # for Packing.GARBAGE, and bytes cut for TRUNCATED (their count)
    length_delta: int = 0  # the batch length field off by this
    wrong_crc: bool = False
    tail: bytes = b""  # bytes sent after the batch


@dataclass(frozen=True, slots=True)
class Built:
    data: bytes
    expect: Expect
    records_section: bytes  # as sent after the 61-byte header (what must be stored as is)
    max_timestamp: int  # what the broker must store (CreateTime), if it accepts
    log_append_time: bool  # the producer set the LogAppendTime flag


def _timestamp_rules(
    spec: BatchSpec, base: int, now_ms: int, header_max: int, rules: _Rules
) -> int:
    """The max timestamp Kafka computes (CreateTime), classifying each record's timestamp."""
    if spec.flags & TIMESTAMP_TYPE_MASK:
        # A LogAppendTime batch's records all read as the header's max timestamp (Kafka's
        # DefaultRecordBatch): -1 is refused, anything else is checked like a record's.
        if header_max == NO_TIMESTAMP:
            rules.refuse("LogAppendTime flag without a timestamp", ErrorCode.invalid_timestamp)
        else:
            _check_timestamp(header_max, now_ms, "LogAppendTime flag", rules)
        return header_max
    maximum = NO_TIMESTAMP
    for index, record in enumerate(spec.records):
        timestamp = base + record.timestamp_delta
        if not INT64[0] <= timestamp <= INT64[1]:
            # Java wraps the sum; either answer is fine, failing is not.
            rules.either(
                f"record {index}: timestamp overflows int64",
                ErrorCode.invalid_timestamp,
                ErrorCode.invalid_record,
            )
            continue
        _check_timestamp(timestamp, now_ms, f"record {index}", rules)
        maximum = max(maximum, timestamp)
    return maximum


def _check_timestamp(timestamp: int, now_ms: int, what: str, rules: _Rules) -> None:
    if timestamp == NO_TIMESTAMP:
        return
    latest = now_ms + TIMESTAMP_AFTER_MAX_MS
    if timestamp > latest + CLOCK_SLACK_MS:
        rules.refuse(f"{what}: timestamp over an hour ahead", ErrorCode.invalid_timestamp)
    elif timestamp > latest - CLOCK_SLACK_MS:
        rules.either(f"{what}: timestamp about an hour ahead", ErrorCode.invalid_timestamp)
    elif timestamp < -(2**62):
        # Kafka's `now - timestamp` overflows here and refuses; samsa's bound is unbounded.
        rules.either(f"{what}: timestamp near -2^63", ErrorCode.invalid_timestamp)


def _header_rules(
    spec: BatchSpec, declared_count: int, last_offset_delta: int, api_version: int, rules: _Rules
) -> None:
    count = len(spec.records)
    if count == 0:
        rules.refuse("no records", ErrorCode.invalid_record)
    elif declared_count != count or last_offset_delta != count - 1:
        rules.refuse(
            f"header says {declared_count} records, last offset delta {last_offset_delta}",
            ErrorCode.invalid_record,
            ErrorCode.corrupt_message,
        )
    if spec.magic != 2:
        rules.refuse(
            f"magic {spec.magic}",
            ErrorCode.invalid_record,
            ErrorCode.corrupt_message,
            ErrorCode.unsupported_for_message_format,
        )
    declared = spec.codec if spec.declared_codec is None else spec.declared_codec
    if declared > ZSTD:
        rules.refuse(f"codec {declared}", ErrorCode.unsupported_compression_type)
    elif declared != spec.codec:
        rules.refuse(
            f"codec {declared} over {spec.codec} data",
            ErrorCode.corrupt_message,
            ErrorCode.invalid_record,
        )
    if declared == ZSTD and api_version < ZSTD_PRODUCE_VERSION_MIN:
        rules.refuse(f"zstd in Produce v{api_version}", ErrorCode.unsupported_compression_type)
    if spec.flags & CONTROL_FLAG:
        rules.refuse("control flag", ErrorCode.invalid_record)
    if spec.flags & TRANSACTIONAL_FLAG:
        rules.either("transactional flag outside a transaction", *PRODUCER_CODES)
    if spec.flags & DELETE_HORIZON_FLAG:
        rules.either("delete horizon flag", ErrorCode.invalid_record)
    if spec.idempotent:
        if spec.base_sequence < 0:
            rules.refuse("idempotent batch without a sequence", ErrorCode.invalid_record)
        elif spec.base_sequence != 0 or spec.producer_epoch < 0:
            rules.either("first batch of a producer id not at sequence 0", *PRODUCER_CODES)
    if spec.packing is Packing.GARBAGE or spec.packing is Packing.TRUNCATED:
        rules.refuse(spec.packing.value, ErrorCode.corrupt_message, ErrorCode.invalid_record)
    elif spec.packing is Packing.BOMB:
        rules.refuse(spec.packing.value, ErrorCode.corrupt_message)
    if spec.length_delta:
        rules.refuse(f"batch length off by {spec.length_delta}", *LENGTH_CODES)
    if spec.wrong_crc:
        rules.refuse("wrong CRC", ErrorCode.corrupt_message)
    if spec.tail:
        rules.refuse(f"{len(spec.tail)} bytes after the batch", *LENGTH_CODES)


def build_batch(spec: BatchSpec, now_ms: int, producer_id: int, api_version: int) -> Built:
    """The batch's bytes and what the broker must answer. `producer_id` is used when the spec
    is idempotent: a fresh one per batch, so no earlier batch decides its sequence."""
    rules = _Rules()
    count = len(spec.records) if spec.count is None else spec.count
    last_offset_delta = (
        len(spec.records) - 1 if spec.last_offset_delta is None else spec.last_offset_delta
    )
    _record_rules(spec.records, rules)
    _header_rules(spec, count, last_offset_delta, api_version, rules)
    base = spec.base_timestamp_ms if spec.timestamp_absolute else now_ms + spec.base_timestamp_ms
    base = _clamp(base)
    plain = b"".join(record_bytes(r, i) for i, r in enumerate(spec.records))
    section = plain if spec.codec == NONE else compress(plain, spec.codec)
    if spec.packing is Packing.GARBAGE:
        section = spec.garbage
    elif spec.packing is Packing.TRUNCATED:
        section = section[: max(0, len(section) - max(1, len(spec.garbage)))]
    elif spec.packing is Packing.BOMB:  # drawn with codec zstd
        section = zstd_bomb(BOMB_INFLATED_BYTES)[HEADER_BYTES:]
    declared = spec.codec if spec.declared_codec is None else spec.declared_codec
    computed_max = max([NO_TIMESTAMP] + [_clamp(base + r.timestamp_delta) for r in spec.records])
    header_max = computed_max if spec.max_timestamp is None else spec.max_timestamp
    stored_max = _timestamp_rules(spec, base, now_ms, header_max, rules)
    pid = producer_id if spec.idempotent else spec.producer_id
    header = HEADER.pack(
        spec.base_offset,
        HEADER_BYTES - LOG_OVERHEAD + len(section) + spec.length_delta,
        spec.partition_leader_epoch,
        spec.magic,
        0,
        _int16(((spec.flags & ~COMPRESSION_MASK) | declared) & 0xFFFF),
        last_offset_delta,
        base,
        header_max,
        pid,
        spec.producer_epoch,
        spec.base_sequence,
        count,
    )
    data = bytearray(header + section)
    crc = crc32c.crc32c(bytes(data[CRC_START:]))
    struct.pack_into(">I", data, CRC_START - 4, crc ^ 1 if spec.wrong_crc else crc)
    return Built(
        bytes(data) + spec.tail,
        rules.expect(),
        section,
        stored_max,
        bool(spec.flags & TIMESTAMP_TYPE_MASK),
    )


def _int16(unsigned: int) -> int:
    return unsigned - 0x10000 if unsigned & 0x8000 else unsigned


def _clamp(value: int) -> int:
    return max(INT64[0], min(INT64[1], value))


# ----------------------------------------------------------------------------- strategies

YEAR_MS = 365 * 24 * 3_600_000
# Values from edge-heavy ranges: small ones to shrink to, the extremes of each field's type.
_TIMESTAMP_DELTAS = st.one_of(
    st.just(0),
    st.integers(-1000, 1000),
    st.sampled_from([INT64[0], INT64[1], -(2**62), 2**62, 2 * 3_600_000, -10 * YEAR_MS]),
)
_SMALL_BYTES = st.one_of(st.none(), st.just(b""), st.binary(max_size=24))
_BYTES = st.one_of(_SMALL_BYTES, st.integers(1000, 50_000).map(lambda n: b"v" * n))
# Header keys are strings in every client (UTF-8 on the wire); values are bytes or null.
_HEADER_KEYS = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=6)
_HEADERS = st.lists(
    st.tuples(_HEADER_KEYS.map(str.encode), st.one_of(st.none(), st.binary(max_size=8))),
    max_size=3,
).map(tuple)


def _amount(damage: Damage) -> st.SearchStrategy[int]:
    if damage is Damage.LENGTH:
        return st.sampled_from([-1, 1, -3, 2, 1000, -1000])
    if damage is Damage.OFFSET_DELTA:
        return st.sampled_from([1, -1, 2, 1000])
    if damage is Damage.TRAILING_BYTES:
        return st.integers(1, 8)
    return st.one_of(st.integers(1, 3), st.sampled_from([1000, 2**20]))


@st.composite
def record_specs(draw: st.DrawFn, chaos: int) -> RecordSpec:
    spec = RecordSpec(
        key=draw(_BYTES),
        value=draw(_BYTES),
        headers=draw(_HEADERS),
        attributes=draw(st.one_of(st.just(0), st.integers(0, 255))),
        timestamp_delta=draw(_TIMESTAMP_DELTAS),
        padding=draw(st.one_of(st.just(0), st.integers(1, 9))),
    )
    if _mutate(draw, chaos):
        damage = draw(st.sampled_from(Damage))
        spec = replace(spec, damage=damage, amount=draw(_amount(damage)))
    return spec


def _mutate(draw: st.DrawFn, chaos: int) -> bool:
    """True for about chaos/16 of draws; shrinks towards False."""
    return draw(st.integers(0, 15)) >= 16 - chaos


@st.composite
def batch_specs(draw: st.DrawFn) -> BatchSpec:
    """A batch any client could send, with edge-valid variations, and with `chaos` > 0 some
    mutations (each field mutated in about chaos/16 of batches)."""
    chaos = draw(st.sampled_from([0, 1, 3]))
    records = tuple(draw(st.lists(record_specs(chaos), min_size=1, max_size=6)))
    codec = draw(st.sampled_from([NONE, GZIP, SNAPPY, LZ4, ZSTD]))
    spec = BatchSpec(
        records,
        codec=codec,
        flags=draw(st.sampled_from([0, 0x80, 0x4000, UNUSED_FLAGS])),
        base_offset=draw(st.sampled_from([0, 1, -1, 1000, INT64[0], INT64[1]])),
        partition_leader_epoch=draw(st.sampled_from([-1, 0, 7, INT32[0], INT32[1]])),
        base_timestamp_ms=draw(st.sampled_from([0, -1000, -10 * YEAR_MS, 1_800_000])),
        max_timestamp=draw(st.sampled_from([None, NO_TIMESTAMP, 0, 12345, INT64[0], INT64[1]])),
    )
    if draw(st.booleans()):
        spec = replace(spec, base_timestamp_ms=draw(st.sampled_from([-1, 0, 1])))
        spec = replace(spec, timestamp_absolute=True)
    if draw(st.booleans()):
        epoch = draw(st.sampled_from([0, 1, 2**15 - 1]))
        spec = replace(spec, idempotent=True, producer_epoch=epoch, base_sequence=0)
    else:
        spec = replace(
            spec,
            producer_id=draw(st.sampled_from([-1, -2, INT64[0]])),
            producer_epoch=draw(st.sampled_from([-1, 0, 5])),
            base_sequence=draw(st.sampled_from([-1, 0, 7])),
        )
    return _mutated(draw, spec, chaos)


def _mutated(draw: st.DrawFn, spec: BatchSpec, chaos: int) -> BatchSpec:
    count = len(spec.records)
    if _mutate(draw, chaos):
        other = draw(st.sampled_from([c for c in range(8) if c != spec.codec]))
        spec = replace(spec, declared_codec=other)
    if _mutate(draw, chaos):
        flag = TIMESTAMP_TYPE_MASK, TRANSACTIONAL_FLAG, CONTROL_FLAG, DELETE_HORIZON_FLAG
        spec = replace(spec, flags=spec.flags | draw(st.sampled_from(flag)))
    if _mutate(draw, chaos):
        spec = replace(spec, magic=draw(st.sampled_from([0, 1, 3, -1, 127])))
    if _mutate(draw, chaos):
        wrong = [0, -1, count - 1, count + 1, 10**6, INT32[1], INT32[0]]
        declared = draw(st.sampled_from(wrong))
        spec = replace(spec, count=declared)
        if draw(st.booleans()):  # the last offset delta follows, as a careful forger's would
            spec = replace(spec, last_offset_delta=max(INT32[0], declared - 1))
    if _mutate(draw, chaos):
        wrong = [-1, count, count - 2, INT32[1], INT32[0]]
        spec = replace(spec, last_offset_delta=draw(st.sampled_from(wrong)))
    if _mutate(draw, chaos):
        ahead = [2 * 3_600_000, YEAR_MS, 3_600_000 + 30_000]
        spec = replace(spec, base_timestamp_ms=draw(st.sampled_from(ahead)))
        spec = replace(spec, timestamp_absolute=False)
    if _mutate(draw, chaos):
        extreme = [INT64[0], INT64[1], 2**62, -(2**62) - 5]
        spec = replace(spec, base_timestamp_ms=draw(st.sampled_from(extreme)))
        spec = replace(spec, timestamp_absolute=True)
    if spec.idempotent and _mutate(draw, chaos):
        spec = replace(spec, base_sequence=draw(st.sampled_from([-1, -5, 1, INT32[1]])))
    if spec.idempotent and _mutate(draw, chaos):
        spec = replace(spec, producer_epoch=draw(st.sampled_from([-1, -(2**15)])))
    if _mutate(draw, chaos):
        packing = draw(st.sampled_from(Packing))
        if packing is Packing.BOMB:
            spec = replace(spec, codec=ZSTD, declared_codec=None)
        spec = replace(spec, packing=packing, garbage=draw(st.binary(min_size=1, max_size=64)))
    if _mutate(draw, chaos):
        delta = [-1, 1, -3, 2, 10**6, -(10**6)]
        spec = replace(spec, length_delta=draw(st.sampled_from(delta)))
    if _mutate(draw, chaos):
        spec = replace(spec, wrong_crc=True)
    if _mutate(draw, chaos):
        spec = replace(spec, tail=draw(st.binary(min_size=1, max_size=16)))
    return spec
