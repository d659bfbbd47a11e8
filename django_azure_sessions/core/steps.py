"""Operations written once, as steps that a sync and an async driver carry out.

An operation is a generator: it yields each request it needs (a ``Call`` of the store, or
whatever its driver understands), is sent the result or thrown the error, and returns its
value. ``drive`` performs the requests with a sync function, ``adrive`` awaits an async one:
the two paths run the same code, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")
C = TypeVar("C")

Steps = Generator[C, Any, T]


class Call(NamedTuple):
    """A request of the core to its storage: a method name (its async twin is ``"a" + name``)
    and its arguments; ``sleep`` waits that many seconds."""

    method: str
    args: tuple[Any, ...] = ()


def drive(steps: Steps[C, T], perform: Callable[[C], Any]) -> T:
    """Run ``steps``, performing each request with ``perform``."""
    try:
        request = next(steps)
        while True:
            try:
                result = perform(request)
            except Exception as exc:
                request = steps.throw(exc)
            else:
                request = steps.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def adrive(steps: Steps[C, T], perform: Callable[[C], Awaitable[Any]]) -> T:
    """Run ``steps``, awaiting ``perform`` for each request."""
    try:
        request = next(steps)
        while True:
            try:
                result = await perform(request)
            except Exception as exc:
                request = steps.throw(exc)
            else:
                request = steps.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
