"""One log line per event: what `samsa` commands print to stderr through `logging`.

A message's own newlines are escaped, and an exception logged with it (`exc_info`) is summed up
on the same line as `(ExcType: message)`: its traceback is printed only with `samsa --debug`,
as every other traceback is. A log reader (grep, journald, a log shipper) then sees one event
per line, never a traceback's lines out of context.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class OneLineFormatter(logging.Formatter):
    def __init__(self, debug: bool = False) -> None:
        """`debug`: tracebacks are printed in full (`samsa --debug`)."""
        super().__init__(FORMAT)
        self.debug = debug

    def format(self, record: logging.LogRecord) -> str:
        if self.debug:
            return super().format(record)
        saved = record.exc_info, record.exc_text, record.stack_info
        exc = record.exc_info[1] if record.exc_info else None
        summary = "" if exc is None else f" ({type(exc).__name__}: {exc})"
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            text = super().format(record) + summary
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
        return text.replace("\r", "\\r").replace("\n", "\\n")


def one_line(debug: bool) -> None:
    """Give the root logger's handlers (what `logging.basicConfig` set up) the one-line form."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(OneLineFormatter(debug))
