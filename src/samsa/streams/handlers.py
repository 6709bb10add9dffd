"""What a record that cannot be processed does to an application, as Kafka Streams' three
exception handlers decide it (`deserialization.exception.handler`,
`processing.exception.handler`, `production.exception.handler`):

- fail: stop the instance (its open transaction aborted), with a message naming the record's
  topic, partition and offset. The record stays uncommitted, so a restart meets it again.
- skip: log it, count it and go on (Kafka's LogAndContinue).
- dead_letter: log it, count it and produce the record's original key and value bytes to the
  dead-letter topic, with headers saying what failed and where (KIP-1034's names). It is
  produced like any output: inside the open transaction under exactly_once, so a record is
  dead-lettered exactly once however often the instance crashes before the commit.

A processing error undoes the record's store writes and drops its outputs (a record is applied
whole or not at all). A production error (an output that cannot be serialised or produced) is
handled per output record, as Kafka's production handler is, whether the client refuses it
in produce() or the broker in the delivery report (runtime.py says how, under exactly_once).
"""

from __future__ import annotations

import enum
import traceback


class OnError(enum.Enum):
    FAIL = "fail"
    SKIP = "skip"
    DEAD_LETTER = "dead_letter"

    @classmethod
    def parse(cls, value: OnError | str) -> OnError:
        if isinstance(value, OnError):
            return value
        try:
            return cls(value.strip().lower().replace("-", "_"))
        except ValueError:
            names = [o.value for o in cls]
            raise ValueError(f"unknown error handling {value!r}; expected {names}") from None


class ErrorKind(enum.Enum):
    DESERIALIZATION = "deserialization"
    PROCESSING = "processing"
    PRODUCTION = "production"


# KIP-1034's dead-letter headers, plus the kind of error and when it was handled.
HEADER_PREFIX = "__streams.errors."


def dead_letter_headers(
    kind: ErrorKind, exc: BaseException, topic: str, partition: int, offset: int, time_ms: int
) -> list[tuple[str, bytes]]:
    stack = "".join(traceback.format_exception(exc))
    return [
        (HEADER_PREFIX + "kind", kind.value.encode()),
        (HEADER_PREFIX + "exception", type(exc).__qualname__.encode()),
        (HEADER_PREFIX + "message", str(exc).encode()),
        (HEADER_PREFIX + "stacktrace", stack.encode()),
        (HEADER_PREFIX + "topic", topic.encode()),
        (HEADER_PREFIX + "partition", str(partition).encode()),
        (HEADER_PREFIX + "offset", str(offset).encode()),
        (HEADER_PREFIX + "time", str(time_ms).encode()),
    ]
