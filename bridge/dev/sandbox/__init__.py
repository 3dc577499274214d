"""A local, stateful stand-in for Azure DevOps and dbt Cloud (``bridge sandbox --port N``)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

from flask import Flask
from werkzeug.serving import make_server

from .server import create_sandbox_app


def serve(host: str, port: int, *, public_url: str | None = None) -> None:
    app = create_sandbox_app(public_url or f"http://{host}:{port}")
    server = make_server(host, port, app, threaded=True)
    try:
        server.serve_forever()
    finally:
        app.extensions["world"].stop()


@contextlib.contextmanager
def serving(host: str = "127.0.0.1") -> Iterator[tuple[str, Flask]]:
    """The sandbox on a free port, served from a thread of this process (contract tests, recordings):
    (its URL, its app); stopped on exit."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    url = f"http://{host}:{port}"
    app = create_sandbox_app(url)
    server = make_server(host, port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield url, app
    finally:
        server.shutdown()
        app.extensions["world"].stop()


__all__ = ["create_sandbox_app", "serve", "serving"]
