"""A managed child never mistakes another process's listener for its own.

Ports are picked free (bind to 0, close) and then handed to the child: between the two, another
process may take the port, and the child's readiness check (the port answers) would pass on the
other process. In CI a router under test once answered 404 that way: it was fake-gcs-server."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator

import pytest

from warden_local import process
from warden_local.process import ManagedProcess, listener_group


class HttpServer(ManagedProcess):
    name = "http.server"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1"]


@pytest.fixture
def held() -> Iterator[int]:
    """A port this test process listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_port_held_by_another_process_is_refused_when_it_was_given(held: int) -> None:
    with pytest.raises(RuntimeError, match="held by another process"):
        HttpServer(held).start(timeout=10)


def test_a_picked_port_taken_meanwhile_is_picked_again(held: int, monkeypatch) -> None:
    picks = iter([held])
    real = process.free_port
    monkeypatch.setattr(process, "free_port", lambda: next(picks, None) or real())
    server = HttpServer().start(timeout=10)
    try:
        assert server.port != held
        assert listener_group(server.port) == server.pid
    finally:
        server.stop()


def test_picked_ports_lie_below_the_ephemeral_range_outgoing_connections_use() -> None:
    # A port picked now and bound later must not be one an outgoing connection's local end can
    # take meanwhile: those come from ip_local_port_range.
    low, _high = process._ephemeral_range()
    picks = {process.free_port() for _ in range(50)}
    assert all(port < low for port in picks)
    assert len(picks) > 40  # spread out, not one port handed to every caller
