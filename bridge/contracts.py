"""The vocabulary the web tier, the CLI and the workers share: task names with their arguments, the queue,
the outbox's channel and the webhook paths. Imports nothing: both tiers may import it.
"""

PROCESS_DELIVERY = "bridge.process_delivery"      # (delivery_id: int)
DISPATCH_DELIVERIES = "bridge.dispatch_deliveries"  # (delivery_ids: list[int]) → one process_delivery each
RECONCILE_PULL_REQUEST = "bridge.reconcile_pull_request"  # (repository_id: int, pull_request_id: int)
REFRESH_RUN = "bridge.refresh_run"                # (ci_run_id: int)
POLL_QUIET_RUNS = "bridge.poll_quiet_runs"
SWEEP_DELIVERIES = "bridge.sweep_deliveries"
SWEEP_PULL_REQUESTS = "bridge.sweep_pull_requests"  # (): compare Azure DevOps' active PRs with ours
REFRESH_CONNECTION = "bridge.refresh_connection"    # (connection_id: int): read who it is and where
RUN_ONBOARDING_JOB = "bridge.run_onboarding_job"    # (job_id: int): a console request (discover, set up, unlink)
CHECK_SUBSCRIPTIONS = "bridge.check_subscriptions"  # (): heal service hooks and dbt webhooks

QUEUE = "bridge"

# On PostgreSQL the receivers' INSERT of new work notifies this channel; the workers' relay listens.
OUTBOX_CHANNEL = "bridge_outbox"

# Where Azure DevOps and dbt Cloud deliver (the receivers serve them; set-up registers them).
AZURE_DEVOPS_WEBHOOK_PATH = "/webhooks/azure-devops"
DBT_CLOUD_WEBHOOK_PATH = "/webhooks/dbt-cloud"
