"""Waiting on an observable outcome with a deadline, never a bare sleep.

A test that needs "the socket is disconnected within 1 s" says exactly that:
``await wait_event(disconnected, 1.0)``. Polling is only for outcomes nothing
signals (a row in another process's view); it has a deadline and a message.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A condition was not met in time. An AssertionError, so pytest shows it as a failure."""


async def wait_for(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 5.0,
    interval: float = 0.02,
    message: str = "",
) -> T:
    """Call ``predicate`` (sync or async) until it returns something truthy; return that.

    Exceptions raised by the predicate propagate at once: a predicate that
    may legitimately fail while waiting must catch its own errors.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    attempts = 0
    last: object = None
    while True:
        attempts += 1
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        last = result
        remaining = deadline - loop.time()
        if remaining <= 0:
            what = message or getattr(predicate, "__qualname__", repr(predicate))
            raise WaitTimeout(
                f"timed out after {timeout:.2f}s ({attempts} checks) waiting for: {what}; "
                f"last value: {last!r}"
            )
        await asyncio.sleep(min(interval, remaining))


async def wait_event(event: asyncio.Event, timeout: float, message: str = "") -> None:
    """Wait until ``event`` is set, or fail after ``timeout`` seconds."""
    await wait_future(event.wait(), timeout, message or "an event")


async def wait_future(future: Awaitable[T], timeout: float, message: str = "") -> T:
    """Await ``future`` (a Future, Task or coroutine) with a deadline and a clear failure."""
    # asyncio.timeout tells its own expiry apart from a TimeoutError raised
    # by the awaited code, which propagates unchanged.
    cm = asyncio.timeout(timeout)
    try:
        async with cm:
            return await future
    except TimeoutError:
        if not cm.expired():
            raise
        raise WaitTimeout(
            f"timed out after {timeout:.2f}s waiting for: {message or 'a result'}"
        ) from None
