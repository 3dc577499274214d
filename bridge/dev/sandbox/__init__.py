"""A local, stateful stand-in for Azure DevOps and dbt Cloud (``bridge sandbox --port N``)."""

from __future__ import annotations

from werkzeug.serving import make_server

from .server import create_sandbox_app


def serve(host: str, port: int, *, public_url: str | None = None) -> None:
    app = create_sandbox_app(public_url or f"http://{host}:{port}")
    server = make_server(host, port, app, threaded=True)
    try:
        server.serve_forever()
    finally:
        app.extensions["world"].stop()


__all__ = ["create_sandbox_app", "serve"]
