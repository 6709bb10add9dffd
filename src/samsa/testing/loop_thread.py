"""An asyncio service hosted on its own thread, for tools used from synchronous code (the
embedded broker, the embedded chaos proxy).

`start` runs `serve(ready, stop)` on a new thread with its own event loop and returns once the
service calls `ready()`; an exception before that is raised to the caller. `stop` sets the
`stop` event and waits for the thread. `call` runs a function on the loop and returns its
result.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
Serve = Callable[[Callable[[], None], asyncio.Event], Awaitable[None]]


class LoopThread:
    def __init__(self, name: str, start_timeout_s: float, stop_timeout_s: float) -> None:
        self.name = name
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self, serve: Serve) -> None:
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(
            target=self._main, args=(serve,), name=self.name, daemon=True
        )
        self._thread.start()
        if not self._ready.wait(self._start_timeout_s):
            raise TimeoutError(f"{self.name} did not start in {self._start_timeout_s} s")
        if self._error is not None:
            raise RuntimeError(f"{self.name} failed to start") from self._error

    def _main(self, serve: Serve) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await serve(self._ready.set, self._stop)

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the thread that called start()
            self._error = exc
        finally:
            self._ready.set()

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(self._stop_timeout_s)
        self._thread = None

    def call(self, function: Callable[[], T], timeout_s: float) -> T:
        loop = self._loop
        if loop is None or self._thread is None:
            raise RuntimeError(f"{self.name} is not running; call start() first")

        async def run() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout_s)
