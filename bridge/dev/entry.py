"""The product's process entry points as the dev stack runs them: the same factories, with the identity
platform served by the sandbox when ``BRIDGE_ENTRA_TEST_BASE`` names it.

``gunicorn 'bridge.dev.entry:create_web_app()'``; ``celery -A bridge.dev.worker_entry worker`` calls
``create_worker_app`` as it is imported, as ``workers/entry.py`` does.
"""

from __future__ import annotations

from .entra_redirect import hosts_from_env


def create_web_app():
    from bridge.web import create_app

    return create_app(identity_hosts=hosts_from_env())


def create_worker_app():
    from workers.app import create_celery_app, tune_worker_process

    tune_worker_process()
    return create_celery_app(identity_hosts=hosts_from_env())
