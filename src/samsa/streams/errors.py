"""What to do about a Kafka client error, after librdkafka's transactional error taxonomy
(INTRODUCTION.md, "Transactional Producer"): retriable -> retry; abortable -> abort the
transaction and rewind the input to its start; fenced -> another instance with this
transactional.id (or a newer group generation) took over, so stop; anything else -> fatal.
"""

from __future__ import annotations

import enum

from confluent_kafka import KafkaError, KafkaException


class Action(enum.Enum):
    RETRY = "retry"
    ABORT = "abort"
    FENCED = "fenced"
    FATAL = "fatal"


_FENCED_CODES = frozenset(
    {
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.FENCED_INSTANCE_ID,
    }
)


def classify(error: KafkaError) -> Action:
    if error.code() in _FENCED_CODES:
        return Action.FENCED
    if error.fatal():
        return Action.FATAL
    if error.txn_requires_abort():
        return Action.ABORT
    if error.retriable():
        return Action.RETRY
    return Action.FATAL


def error_of(exc: KafkaException) -> KafkaError:
    error = exc.args[0] if exc.args else None
    if isinstance(error, KafkaError):
        return error
    return KafkaError(KafkaError._FAIL, str(exc))


class StreamsError(Exception):
    """Raised by the runtime for a fault it cannot recover from inside this instance; the
    instance stops (its open transaction, if any, is aborted). Restart it."""


class InstanceFenced(StreamsError):
    """Raised when this instance was fenced: a newer instance with the same transactional.id,
    or a newer group generation, owns its work now. Nothing is committed; the instance stops."""


class ProcessingError(StreamsError):
    """Raised when an application function raised; the record's transaction is aborted (or,
    without exactly_once, its offsets are not committed). The cause is chained."""
