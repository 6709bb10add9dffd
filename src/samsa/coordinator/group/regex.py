"""Subscription regexes of the consumer group protocol (KIP-848), matched as Kafka matches them.

Kafka compiles `subscribed_topic_regex` with RE2/J and keeps the topics whose whole name
`matches` it. samsa uses Google's RE2 (the `google-re2` bindings): the same syntax, and matching
in time linear in the topic name whatever the pattern, so a client's pattern cannot stall the
broker (Python's `re` backtracks exponentially on patterns such as `(a|a)*b`). RE2 and RE2/J
differ only in corners (RE2/J has no `\\C`, for instance), which topic names never reach.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import re2  # type: ignore[import-untyped]

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a client's bad pattern is its error, not the broker's log noise
_COMPILED_MAX = 1024  # patterns kept compiled (every heartbeat of a regex member matches)


class InvalidRegex(Exception):
    """The pattern is not a valid RE2 expression; the message says why (RE2's words)."""


@functools.lru_cache(maxsize=_COMPILED_MAX)
def topic_matcher(pattern: str) -> Callable[[str], bool]:
    """A test of topic names against `pattern` (the whole name must match). Raises
    InvalidRegex."""
    try:
        compiled = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid"
        text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        raise InvalidRegex(text) from exc

    def matches(name: str) -> bool:
        return compiled.fullmatch(name) is not None

    return matches
