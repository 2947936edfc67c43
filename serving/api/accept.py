"""One accepted connection per event-loop wake-up, so every worker gets its share (issue 22).

BentoML starts its workers on one shared listening socket, and each runs uvicorn on
asyncio. asyncio accepts up to ``backlog`` connections each time the socket is readable
(``BaseSelectorEventLoop._accept_connection``; uvicorn passes BentoML's backlog, 2048), so
the first worker to wake takes every connection waiting: with 16 keep-alive connections
opened together, one worker often held all 16 and the other none (245 requests/s against
485 when 8/8; more workers did not help). Neither BentoML nor uvicorn has an option for
it. Accepting one connection per wake-up leaves the rest for the next readiness event,
which every worker polling the socket sees, so an idle worker takes the next one: the
"one accept per wake-up" that libuv offers as ``UV_TCP_SINGLE_ACCEPT``. The listen queue
keeps its length (``sock.listen(backlog)`` is called apart, by ``asyncio.Server``).

This patches a private method of the standard library's selector event loop, checked: if
its signature is not the one patched (another Python), nothing is changed and ``install``
says so.
"""

from __future__ import annotations

import inspect
from asyncio import selector_events
from typing import Any

_ORIGINAL = selector_events.BaseSelectorEventLoop._start_serving
_EXPECTED = ("self", "protocol_factory", "sock", "sslcontext", "server", "backlog")


def _one_at_a_time(self: Any, protocol_factory: Any, sock: Any, *args: Any, **kwargs: Any) -> Any:
    """``_start_serving`` with the accept loop's bound set to 1 (``backlog`` is its 4th
    positional argument after ``sock``: sslcontext, server, backlog)."""
    args = list(args)
    if len(args) >= 3:
        args[2] = 1
    else:
        kwargs["backlog"] = 1
    return _ORIGINAL(self, protocol_factory, sock, *args, **kwargs)


def install() -> bool:
    """Make every selector event loop accept one connection per wake-up; True if it did."""
    loop_cls = selector_events.BaseSelectorEventLoop
    if loop_cls._start_serving is _one_at_a_time:
        return True
    params = tuple(inspect.signature(_ORIGINAL).parameters)[: len(_EXPECTED)]
    if params != _EXPECTED:
        return False
    loop_cls._start_serving = _one_at_a_time  # type: ignore[method-assign]
    return True
