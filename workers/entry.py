"""Process entry point for ``celery -A workers.entry worker|beat``: builds the app when the process starts."""

from workers.app import create_celery_app

app = create_celery_app()
