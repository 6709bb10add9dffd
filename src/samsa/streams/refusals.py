"""Which outputs the broker refused for good, as a runtime learns it from delivery reports
(Kafka Streams gives such send errors to its ProductionExceptionHandler).

A broker refuses a whole batch (MSG_SIZE_TOO_LARGE for a batch holding one oversized record),
so a refused record is the culprit only if it was refused alone: the only refused record of
its partition in the interval, or produced alone on purpose. The runtime rewinds to the last
commit after refusals, and asks this book about each output as its record is processed again:
produce it (normally or alone), or hand it to the production handler. Refused records are known
by content (topic, key, value) until outputs are tracked: then by output, the input record's
(topic, partition, offset) and the output's index among that record's outputs. Pure: no I/O;
the runtime feeds it the delivery reports.
"""

from __future__ import annotations

import collections
import enum

from confluent_kafka import KafkaError, KafkaException, Message

from samsa.streams.errors import StreamsError

# Delivery report errors that concern the record itself: the broker refuses it however often
# it is sent (Kafka's RecordCollectorImpl gives these to the production handler).
REFUSED = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_TIMESTAMP,
    }
)

# An output of one input record: (topic, partition, offset, index among its outputs).
OutputId = tuple[str, int, int, int]
Content = tuple[str, bytes | None, bytes | None]


class Verdict(enum.Enum):
    PRODUCE = "produce"
    PRODUCE_ALONE = "produce_alone"  # refused with others: find out whether it is the culprit
    REFUSED = "refused"  # the culprit: the production handler decides


class Refusals:
    def __init__(self) -> None:
        # Delivery reports not yet learnt from: untracked (error, record), tracked ones
        # (output, error, record).
        self._records: list[tuple[KafkaError, Message]] = []
        self._tracked: list[tuple[OutputId, KafkaError, Message]] = []
        # Learnt, for the rewound interval: content -> (refusal, refused alone).
        self._content: dict[Content, tuple[KafkaException, bool]] = {}
        self._refused: dict[OutputId, KafkaException] = {}
        self._suspects: set[OutputId] = set()

    @property
    def pending(self) -> bool:
        """Refusals reported and not yet learnt: the interval must be rewound."""
        return bool(self._records or self._tracked)

    @property
    def tracking(self) -> bool:
        """Whether outputs must be tracked (produced with a delivery callback each)."""
        return bool(self._content or self._refused or self._suspects)

    def reported(self, error: KafkaError, message: Message) -> None:
        self._records.append((error, message))

    def reported_output(self, output: OutputId, error: KafkaError, message: Message) -> None:
        self._tracked.append((output, error, message))

    def learn(self) -> int:
        """Sort the reported refusals into culprits and suspects; how many there were."""
        records, self._records = self._records, []
        tracked, self._tracked = self._tracked, []
        per_partition = collections.Counter(place(m) for _e, m in records)
        per_partition.update(place(m) for _o, _e, m in tracked)
        for error, message in records:
            alone = per_partition[place(message)] == 1
            content = (place(message)[0], message.key(), message.value())
            self._content[content] = (refusal(error, message), alone)
        for output, error, message in tracked:
            if output in self._suspects or per_partition[place(message)] == 1:
                self.confirm(output, refusal(error, message))
            else:
                self._suspects.add(output)
        return len(records) + len(tracked)

    def verdict(self, output: OutputId, content: Content) -> tuple[Verdict, KafkaException | None]:
        refused = self._refused.get(output)
        if refused is not None:
            return Verdict.REFUSED, refused
        known = self._content.get(content)
        if known is not None and known[1]:
            return Verdict.REFUSED, known[0]
        if known is not None or output in self._suspects:
            return Verdict.PRODUCE_ALONE, None
        return Verdict.PRODUCE, None

    def take(self, output: OutputId) -> KafkaException | None:
        """The refusal of `output`, just produced alone and flushed, if it was refused."""
        for entry in self._tracked:
            if entry[0] == output:
                self._tracked.remove(entry)
                return refusal(entry[1], entry[2])
        return None

    def confirm(self, output: OutputId, refused: KafkaException) -> None:
        self._suspects.discard(output)
        self._refused[output] = refused

    def committed(self, positions: dict[tuple[str, int], int]) -> None:
        """Forget what concerns records below the committed `positions` (and the content
        learnt for the rewound interval: what is left of it, if anything, is learnt again)."""
        self._content.clear()

        def done(output: OutputId) -> bool:
            return output[2] < positions.get(output[:2], -1)

        self._refused = {o: e for o, e in self._refused.items() if not done(o)}
        self._suspects = {o for o in self._suspects if not done(o)}

    def drop_pending(self) -> None:
        self._records.clear()
        self._tracked.clear()


def place(message: Message) -> tuple[str, int]:
    topic, partition = message.topic(), message.partition()
    if topic is None or partition is None:
        raise StreamsError(f"a delivery report without a partition: {message!r}")
    return topic, partition


def refusal(error: KafkaError, message: Message) -> KafkaException:
    topic, partition = place(message)
    text = f"output to {topic}[{partition}] refused by the broker: {error.str()}"
    return KafkaException(KafkaError(error.code(), text))
