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


def post_fork(server, worker):
    # Request threads wait on the database; a shorter GIL switch interval lets one whose answer has
    # arrived run at once instead of after another thread's CPU-bound slice.
    import sys

    sys.setswitchinterval(float(os.environ.get("BRIDGE_GIL_SWITCH_INTERVAL", "0.001")))
