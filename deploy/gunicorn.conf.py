# Gunicorn settings for the web process (read by gunicorn, never imported by the bridge).
# Sync workers: a webhook is a short CPU-bound request with one INSERT; more processes, not threads,
# scale it. PORT is honoured for platforms that set it (Procfile, containers).
import os

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "sync"
timeout = 30
graceful_timeout = 20
keepalive = 5
max_requests = 10000
max_requests_jitter = 1000
accesslog = "-" if os.environ.get("BRIDGE_ACCESS_LOG") else None
errorlog = "-"
loglevel = os.environ.get("BRIDGE_LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
