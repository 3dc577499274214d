"""Slow clients cannot stall the web tier as it is deployed: nginx (deploy/nginx/bridge.conf) in front of
gunicorn. A hundred connections trickle their headers or their bodies, from several addresses, while probes
and authentic Azure DevOps deliveries keep getting answers (security review F1)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest
import requests

from .conftest import HOOK_PASSWORD, HOOK_USER
from .test_receivers import real_event

SLOW_ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
SLOW_CONNECTIONS = 100
ANSWER_WITHIN = 1.0  # seconds: a probe or a delivery waiting longer than this counts as stalled


@pytest.fixture(scope="module")
def proxied(bridge, infra):
    """The deployed shape: nginx on a port of its own, proxying to the bridge's gunicorn."""
    return infra.start_proxy(bridge.web)


class Trickler:
    """Connections that each send a little every ``every`` seconds and never finish their request."""

    def __init__(self, url: str, *, every: float = 0.5):
        host, port = url.removeprefix("http://").split(":")
        self.target, self.every = (host, int(port)), every
        self.sockets: list[socket.socket] = []
        self.stop = threading.Event()

    def open(self, count: int) -> None:
        for n in range(count):
            sock = socket.socket()
            sock.bind((SLOW_ADDRESSES[n % len(SLOW_ADDRESSES)], 0))
            sock.settimeout(5)
            sock.connect(self.target)
            if n % 2:  # a slow body: headers sent, then a byte at a time of a large delivery
                sock.sendall(b"POST /webhooks/dbt-cloud HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json"
                             b"\r\nContent-Length: 100000\r\n\r\n{")
            else:      # slow headers: a request line, then one header line at a time
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n")
            self.sockets.append(sock)
        threading.Thread(target=self._trickle, daemon=True).start()

    def _trickle(self) -> None:
        n = 0
        while not self.stop.wait(self.every):
            n += 1
            for i, sock in enumerate(self.sockets):
                with contextlib.suppress(OSError):
                    sock.sendall(b" " if i % 2 else f"X-Slow-{n}: {n}\r\n".encode())

    def held(self) -> int:
        """How many connections are still open and unanswered (neither refused nor timed out yet)."""
        count = 0
        for sock in self.sockets:
            sock.setblocking(False)
            try:
                sock.recv(1, socket.MSG_PEEK)  # an answer, or b"" for a closed connection: not held
            except BlockingIOError:
                count += 1
            except OSError:
                pass
            finally:
                sock.setblocking(True)
        return count

    def close(self) -> None:
        self.stop.set()
        for sock in self.sockets:
            sock.close()


def test_a_hundred_slow_connections_stall_neither_probes_nor_deliveries(bridge, proxied):
    probe = requests.Session()  # no retries: a request that waits longer than ANSWER_WITHIN fails the test
    slow = Trickler(proxied)
    slow.open(SLOW_CONNECTIONS)
    try:
        time.sleep(1.5)  # every slow connection is in, trickling
        assert slow.held() == SLOW_CONNECTIONS, "the slow connections were not all held open"
        for _ in range(6):
            assert probe.get(f"{proxied}/healthz", timeout=ANSWER_WITHIN).status_code == 200
            body, _ = real_event(bridge)
            answer = probe.post(f"{proxied}/webhooks/azure-devops", json=body, auth=(HOOK_USER, HOOK_PASSWORD),
                                timeout=ANSWER_WITHIN)
            assert answer.status_code == 202, answer.text
            time.sleep(0.5)
        assert slow.held() == SLOW_CONNECTIONS  # still trickling all along: they were in the way the whole time
    finally:
        slow.close()


def test_slow_clients_are_cut_off_and_capped_per_address(bridge, proxied):
    host, port = proxied.removeprefix("http://").split(":")
    stalled = socket.create_connection((host, int(port)), timeout=15)
    stalled.sendall(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n")  # and then nothing
    started = time.monotonic()
    answer = stalled.recv(200)  # nginx closes the connection once client_header_timeout (10 s) passes
    assert answer == b"" or b" 408 " in answer
    assert time.monotonic() - started < 14, "a stalled client was kept past the header timeout"
    stalled.close()
    held_open = []
    try:
        for _ in range(70):  # slow bodies from one address: past the per-address cap of 64
            sock = socket.socket()
            sock.bind(("127.0.0.9", 0))
            sock.settimeout(3)
            sock.connect((host, int(port)))
            sock.sendall(b"POST /webhooks/dbt-cloud HTTP/1.1\r\nHost: bridge\r\nContent-Length: 100000\r\n\r\n{")
            held_open.append(sock)
        time.sleep(1)
        refused = 0
        for sock in held_open:
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                refused += sock.recv(64).startswith(b"HTTP/1.1 429")
        assert refused == 70 - 64
    finally:
        for sock in held_open:
            sock.close()
