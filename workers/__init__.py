"""Celery workers and beat: reconcile pull requests, settle runs, sweep the outbox."""
