"""Process entry point for ``celery -A workers.entry worker|beat``: builds the app when the process starts."""

from workers.app import create_celery_app, tune_worker_process

tune_worker_process()
app = create_celery_app()
