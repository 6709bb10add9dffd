"""How the process's file descriptors are shared between log files, connections and the rest.

The soft open-files limit (`samsa serve` first raises it to the hard limit, as the JVM does for
Kafka) is split three ways:

- log files: `log.open.files.max`, or by default a quarter of the limit; the `FileCache` closes
  the least recently used beyond it, so partitions cost descriptors only while they are busy;
- `FD_SLACK` for what the broker opens for a moment or for its whole life besides: stdio, the
  listening socket, the data dir's lock, directory fsyncs, `topics.json` and snapshot writes,
  the event loop's own;
- connections: the rest, and never less than a quarter of the limit (a `log.open.files.max`
  set too high eats into the slack, and accept() running out is then handled by the listener).
"""

from __future__ import annotations

import resource

FD_SLACK = 64
LOG_FILES_MIN = 16
# Where the open-files limit is unlimited: still a bound, as every cache needs one.
LOG_FILES_WHEN_UNLIMITED = 1 << 16
UNLIMITED = 1 << 62


def open_files_limit() -> int | None:
    """The soft RLIMIT_NOFILE now; None if unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return None
    return soft


def log_files_max(configured: int) -> int:
    """Descriptors the log files may hold at once: `log.open.files.max` (0: the default)."""
    if configured > 0:
        return configured
    limit = open_files_limit()
    if limit is None:
        return LOG_FILES_WHEN_UNLIMITED
    return max(LOG_FILES_MIN, limit // 4)


def connection_fds_max(log_files: int) -> int:
    """Descriptors connections may hold at once, given the log files' share."""
    limit = open_files_limit()
    if limit is None:
        return UNLIMITED
    return max(limit - log_files - FD_SLACK, limit // 4)
