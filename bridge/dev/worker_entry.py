"""``celery -A bridge.dev.worker_entry worker|beat``: the worker process as the dev stack runs it."""

from .entry import create_worker_app

app = create_worker_app()
