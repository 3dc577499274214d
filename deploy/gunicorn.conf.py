# Gunicorn settings for the web process (read by gunicorn, never imported by the bridge).
# Threaded workers: each request thread commits its delivery on a database connection it keeps (one
# autocommit INSERT, bridge/deliveries/outbox.py) while others run; processes scale CPU.
# PORT is honoured for platforms that set it (Procfile, containers).
import os

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "16"))
timeout = 30
graceful_timeout = 20
keepalive = 5
# Recycling workers costs a cold start under load; off unless asked for (e.g. to contain a leak).
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
accesslog = "-" if os.environ.get("BRIDGE_ACCESS_LOG") else None
errorlog = "-"
loglevel = os.environ.get("BRIDGE_LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_starting(server):
    # Counters add up across this master's worker processes (prometheus-client's multiprocess mode): a
    # directory of its own, empty at start, set before any worker imports prometheus_client.
    import tempfile
    from pathlib import Path

    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        for stale in Path(directory).glob("*.db"):
            stale.unlink()
    else:
        directory = tempfile.mkdtemp(prefix="bridge-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        _created.append(directory)


_created: list[str] = []  # the metrics directory on_starting made (removed on exit); an operator's is kept


def on_exit(server):
    import shutil

    for directory in _created:
        shutil.rmtree(directory, ignore_errors=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_fork(server, worker):
    # Request threads wait on the database; a shorter GIL switch interval lets one whose answer has
    # arrived run at once instead of after another thread's CPU-bound slice.
    import sys

    sys.setswitchinterval(float(os.environ.get("BRIDGE_GIL_SWITCH_INTERVAL", "0.001")))
