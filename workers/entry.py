"""Process entry point for ``celery -A workers.entry worker|beat``: builds the app when the process starts."""

import os
import sys

from workers.app import create_celery_app

# The consumer thread hands tasks to the pool's threads; with many threads waiting on HTTP, a shorter GIL
# switch interval keeps it from queueing behind their Python slices (it fetches one message per turn).
sys.setswitchinterval(float(os.environ.get("BRIDGE_GIL_SWITCH_INTERVAL", "0.001")))

app = create_celery_app()
