"""The dev tooling's commands on the ``bridge`` CLI: ``bridge sandbox`` and ``bridge demo``."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.option("--port", type=int, required=True, help="Port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True)
def sandbox(port: int, host: str) -> None:
    """Run the local fake Azure DevOps + dbt Cloud (control API under /_sandbox)."""
    from .sandbox import serve

    click.echo(f"sandbox on http://{host}:{port} (Azure DevOps org URL http://{host}:{port}/fabrikam, "
               f"dbt Cloud URL http://{host}:{port})")
    serve(host, port)


@click.command()
@click.option("--once", is_flag=True, help="Play the scenario once and exit 0 only if every expectation held.")
@click.option("--workdir", type=click.Path(path_type=Path, file_okay=False), default=Path(".demo"),
              show_default=True)
def demo(once: bool, workdir: Path) -> None:
    """Start Redis, the sandbox, web, worker and beat on SQLite and play the CI scenario."""
    from .demo import run_demo

    sys.exit(run_demo(workdir=workdir, once=once))


COMMANDS = (sandbox, demo)
