"""The application facade: declare topics, stores and streams on an `App`, then call
`app.run()` (or `samsa streams run module:app`). See samsa/streams/examples/balances.py.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from types import FrameType
from typing import Any

from samsa.streams.errors import InstanceFenced, StreamsError
from samsa.streams.guarantee import Guarantee
from samsa.streams.punctuation import PunctuationType, Punctuator, parse_kind
from samsa.streams.runtime import Worker
from samsa.streams.serde import Serde, resolve
from samsa.streams.settings import Settings
from samsa.streams.store import StoreSpec
from samsa.streams.topology import Materialize, Node, Stream, Table, Topic

log = logging.getLogger("samsa.streams")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_FENCED = 3
EXIT_INTERRUPTED = 130  # stopped cleanly on SIGINT (Ctrl-C), as a shell reports it


class App:
    """A stream processing application; `application_id` is its consumer group and the prefix
    of its transactional ids and changelog topics."""

    def __init__(
        self,
        application_id: str,
        *,
        bootstrap_servers: str = "127.0.0.1:9092",
        processing_guarantee: Guarantee | str = Guarantee.EXACTLY_ONCE,
        commit_interval_ms: int = 100,
        instance_id: str | None = None,
        **settings: Any,
    ) -> None:
        self.settings = Settings(
            application_id=application_id,
            bootstrap_servers=bootstrap_servers,
            processing_guarantee=Guarantee.parse(processing_guarantee),
            commit_interval_ms=commit_interval_ms,
            instance_id=instance_id,
            **settings,
        )
        self._sources: dict[str, tuple[Topic, Node]] = {}
        self._hooks: list[Callable[[], None]] = []
        self._punctuators: list[Punctuator] = []

    def topic(
        self,
        name: str,
        *,
        key: Serde | str = "bytes",
        value: Serde | str = "bytes",
        partitions: int | None = None,
        config: dict[str, str] | None = None,
    ) -> Topic:
        return Topic(name, resolve(key), resolve(value), partitions, dict(config or {}))

    def store(
        self, name: str, *, key: Serde | str = "str", value: Serde | str = "json"
    ) -> StoreSpec:
        return StoreSpec(name, resolve(key), resolve(value))

    def stream(self, topic: Topic | str) -> Stream:
        """The records of an input topic (a name means bytes keys and values)."""
        source = self.topic(topic) if isinstance(topic, str) else topic
        if source.name in self._sources:
            known, root = self._sources[source.name]
            if known != source:
                raise ValueError(f"topic {source.name!r} is already a source with other serdes")
            return Stream(root, self)
        root = Node()
        self._sources[source.name] = (source, root)
        return Stream(root, self)

    def table(self, topic: Topic | str, *, name: str | None = None) -> Table:
        """A topic read as a table (key -> latest value; a null value deletes), kept in the
        store `name` (default: the topic's name), for `stream.join(table, fn)`. The table's
        partition p is read by the instance that owns partition p of the streams joined."""
        source = self.topic(topic) if isinstance(topic, str) else topic
        spec = StoreSpec(name or source.name, source.key_serde, source.value_serde)
        table = Table(source, spec)
        stream = self.stream(source)
        stream._then(Materialize(spec))
        return table

    def repartition_topic(self, name: str, key: Serde | str, value: Serde | str) -> Topic:
        """The internal topic of `stream.group_by(fn, name)`."""
        return self.topic(
            f"{self.settings.application_id}-{name}-repartition", key=key, value=value
        )

    def before_offsets_commit(self, hook: Callable[[], None]) -> None:
        """Call `hook` at each commit after the outputs and changelogs are written (flushed,
        without exactly_once) and before the offsets are: the point where a crash shows the
        difference between the guarantees. For fault-injection tests."""
        self._hooks.append(hook)

    def punctuate(
        self,
        fn: Callable[..., Iterable[Any] | None],
        *,
        every_ms: int,
        stores: Sequence[StoreSpec] = (),
        to: Topic | None = None,
        time: PunctuationType | str = "wall_clock_time",
    ) -> None:
        """Call fn(time_ms, *stores) for each task every `every_ms` of wall-clock time or
        (`time="stream_time"`) of the task's record timestamps; the (key, value) records it
        returns go to `to`, inside the open transaction (samsa/streams/punctuation.py)."""
        self._punctuators.append(Punctuator(fn, every_ms, parse_kind(time), tuple(stores), to))

    def worker(self, **overrides: Any) -> Worker:
        """An instance of this application; run it with `.run()`, stop it with `.stop()`."""
        if not self._sources:
            raise StreamsError("the application has no streams: call app.stream(...) first")
        if "processing_guarantee" in overrides:
            overrides["processing_guarantee"] = Guarantee.parse(overrides["processing_guarantee"])
        settings = dataclasses.replace(self.settings, **overrides)
        return Worker(settings, dict(self._sources), self._hooks, self._punctuators)

    def run(self, **overrides: Any) -> int:
        """Run one instance in this process until SIGTERM/SIGINT (then commit or abort what is
        open and leave the group). The exit code: 0 clean, 3 fenced, 1 failed, 130 a clean stop
        on SIGINT (Ctrl-C)."""
        if not logging.getLogger().handlers:
            logging.basicConfig(
                level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
            )
        worker = self.worker(**overrides)
        received: list[int] = []

        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %d: stopping", signum)
            received.append(signum)
            worker.stop()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
        try:
            worker.run()
        except InstanceFenced as exc:
            log.error("fenced: %s", exc)
            return EXIT_FENCED
        except StreamsError as exc:
            log.error("stopped by a fault: %s", exc, exc_info=True)
            return EXIT_FAILED
        return EXIT_INTERRUPTED if signal.SIGINT in received else EXIT_OK
