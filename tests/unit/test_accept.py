"""One accepted connection per event-loop wake-up (``serving.api.accept``, issue 22): the
connections waiting on the shared socket are left for the other workers to take."""

from __future__ import annotations

import asyncio
import socket

import pytest

from serving.api import accept


class _Closing(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


def _waiting_after_one_wake_up(patched: bool, monkeypatch: pytest.MonkeyPatch) -> int:
    """Connect 4 clients, let the server's loop run one iteration, and count the
    connections still waiting in the listen queue."""
    from asyncio import selector_events

    original = accept._ORIGINAL
    monkeypatch.setattr(selector_events.BaseSelectorEventLoop, "_start_serving", original)
    if patched:
        assert accept.install()
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    port = listener.getsockname()[1]
    loop = asyncio.new_event_loop()
    clients = []
    try:
        server = loop.run_until_complete(loop.create_server(_Closing, sock=listener, backlog=64))
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        loop._run_once()  # type: ignore[attr-defined]  # one wake-up of the listening socket
        listener.setblocking(False)
        waiting = 0
        while True:
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                break
            conn.close()
            waiting += 1
        loop.run_until_complete(asyncio.sleep(0.05))  # the accepted one is set up and closed
        server.close()
        loop.run_until_complete(server.wait_closed())
        return waiting
    finally:
        for c in clients:
            c.close()
        loop.close()


def test_asyncio_alone_takes_every_waiting_connection_at_once(monkeypatch) -> None:
    assert _waiting_after_one_wake_up(False, monkeypatch) == 0


def test_installed_it_takes_one_and_leaves_the_rest(monkeypatch) -> None:
    assert _waiting_after_one_wake_up(True, monkeypatch) == 3
