"""Time-bounded driver calls for network outputs (S7, OPC UA): the actuation thread never waits past a timeout.

A PLC that vanishes mid-request (cable pulled, CPU in STOP, a switch rebooting) can leave a TCP read waiting
for seconds. The ejector's thread must keep driving the other output and the pulse schedule, so every
driver call runs elsewhere and the caller waits at most `timeout` seconds for it:

- `BlockingWorker`: a blocking driver (python-snap7's client) on one worker thread;
- `LoopThread`: an asyncio driver (asyncua) on an event loop in its own thread; a timed-out call is cancelled.

A call that timed out leaves the link marked down (the actuator's retry with back-off takes over); while a
blocking call is still stuck in its worker, the next ones fail at once instead of queueing behind it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class CallTimeout(TimeoutError):
    """A driver call did not finish within its time bound."""


class BlockingWorker:
    """Runs one blocking call at a time on a worker thread; `call` waits at most `timeout` seconds."""

    def __init__(self, name: str) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: concurrent.futures.Future[Any] | None = None
        self._closed = False

    def call(self, fn: Callable[[], T], timeout: float) -> T:
        """`fn()` on the worker; CallTimeout when it takes longer (or an earlier call is still stuck)."""
        if self._closed:
            raise ConnectionError("the link is closed")
        if self._pending is not None and not self._pending.done():
            raise CallTimeout("the previous request has not returned yet")
        future = self._executor.submit(fn)
        self._pending = future
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            raise CallTimeout(f"no answer within {timeout:g} s") from exc

    def submit(self, fn: Callable[[], object]) -> None:
        """Run `fn()` on the worker without waiting (after any call still in progress); ignored once closed."""
        if not self._closed:
            self._executor.submit(fn)

    def close(self) -> None:
        """Stop the worker after what was submitted; does not wait for it."""
        self._closed = True
        self._executor.shutdown(wait=False)


class LoopThread:
    """An asyncio event loop on its own daemon thread; `run` waits at most `timeout` seconds for a coroutine."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T], timeout: float) -> concurrent.futures.Future[T]:
        """Start `coro` on the loop, cancelled after `timeout` seconds; the caller decides how long to wait."""
        return asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run `coro` on the loop; CallTimeout (and the coroutine cancelled) when it takes longer."""
        future = self.submit(coro, timeout)
        try:
            return future.result(timeout + 1.0)  # wait_for cancels on the loop; this bounds a blocked loop too
        except (asyncio.TimeoutError, concurrent.futures.TimeoutError) as exc:
            future.cancel()
            raise CallTimeout(f"no answer within {timeout:g} s") from exc

    def close(self) -> None:
        """Stop the loop and its thread (pending tasks are cancelled)."""
        if self.loop.is_closed():
            return

        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(_cancel_all(), self.loop).result(2.0)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass  # a loop that does not answer is left to die with the process (daemon thread)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(2.0)
        if not self._thread.is_alive():
            self.loop.close()
