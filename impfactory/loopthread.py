"""An asyncio loop in a daemon thread, for synchronous callers of async services.

``CloudThread``, ``ApiThread`` (cloud/) and the emulated bench's
``ControllerThread`` (hw/) each run a service on a loop of their own so that
tests, scripts and the node harness can stay synchronous. A service's state may
only be touched on that loop's thread, so everything goes through ``run`` (a
coroutine) or ``call`` (a plain function); this class is that shared part, in the
root package because layers that may not import each other all need it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: Seconds ``call`` waits for a function on the loop before giving up.
CALL_TIMEOUT = 30.0


class LoopThread:
    """A new event loop that ``start_loop`` runs forever in a daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)

    def start_loop(self) -> None:
        self._thread.start()

    @property
    def loop_alive(self) -> bool:
        """True from ``start_loop`` until ``stop_loop``."""
        return self._thread.is_alive()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run a coroutine on the loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = CALL_TIMEOUT,
             **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the loop's thread and return its result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def go() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as err:  # handed to the caller
                future.set_exception(err)

        self.loop.call_soon_threadsafe(go)
        return future.result(timeout)

    def stop_loop(self) -> None:
        """Stop the loop, end the thread and close the loop; safe to call twice."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        if not self.loop.is_closed() and not self.loop.is_running():
            self.loop.close()
