"""The vocabulary the web tier, the CLI and the workers share: task names with their arguments, the queue,
the outbox's channel, the webhook paths, and the console's onboarding jobs (kinds, set-up steps, outcomes).
Imports nothing of ours: both tiers may import it.
"""

from enum import StrEnum

PROCESS_DELIVERY = "bridge.process_delivery"      # (delivery_id: int)
DISPATCH_DELIVERIES = "bridge.dispatch_deliveries"  # (delivery_ids: list[int]) → one process_delivery each
RECONCILE_PULL_REQUEST = "bridge.reconcile_pull_request"  # (repository_id: int, pull_request_id: int)
RERUN_PULL_REQUEST = "bridge.rerun_pull_request"  # (repository_id: int, pull_request_id: int): a fresh head run
RETRY_REFUSED_STARTS = "bridge.retry_refused_starts"  # (): rerun the heads dbt Cloud refused to start, after a fix
REFRESH_RUN = "bridge.refresh_run"                # (ci_run_id: int)
POLL_QUIET_RUNS = "bridge.poll_quiet_runs"
SWEEP_DELIVERIES = "bridge.sweep_deliveries"
SWEEP_PULL_REQUESTS = "bridge.sweep_pull_requests"  # (now: bool = False): plan a round of project listings
SWEEP_PROJECT = "bridge.sweep_project"              # (organization_id: int, project_id: str): list, reconcile stale
REFRESH_CONNECTION = "bridge.refresh_connection"    # (connection_id: int): read who it is and where
RUN_ONBOARDING_JOB = "bridge.run_onboarding_job"    # (job_id: int): a console request (discover, set up, unlink)
CHECK_SUBSCRIPTIONS = "bridge.check_subscriptions"  # (): heal service hooks and dbt webhooks
PRUNE_HISTORY = "bridge.prune_history"              # (): prune finished deliveries and activity past the retention
NOTIFY_PEOPLE = "bridge.notify_people"              # (): post new problems that need a person (BRIDGE_NOTIFY_URL)

QUEUE = "bridge"
CONSOLE_QUEUE = "bridge-console"  # the console's onboarding jobs: their own queue, so they never delay deliveries

# On PostgreSQL the receivers' INSERT of new work notifies this channel; the workers' relay listens.
OUTBOX_CHANNEL = "bridge_outbox"

# Where Azure DevOps and dbt Cloud deliver (the receivers serve them; set-up registers them).
AZURE_DEVOPS_WEBHOOK_PATH = "/webhooks/azure-devops"
DBT_CLOUD_WEBHOOK_PATH = "/webhooks/dbt-cloud"


class JobKind(StrEnum):
    """What a console onboarding job asks the workers for (``OnboardingJob.kind``)."""

    PROJECTS = "projects"          # list an organization's projects
    REPOSITORIES = "repositories"  # list a project's repositories
    DBT = "dbt"                    # list dbt Cloud jobs and environments to choose from
    DBT_ACCOUNT = "dbt-account"    # check a dbt Cloud account's token
    SETUP = "setup"                # set a repository up (SetupStep by SetupStep)
    UNLINK = "unlink"              # undo a set-up


class SetupStep(StrEnum):
    """The steps of a repository's set-up, in the order they run."""

    REPOSITORY = "repository"
    PERMISSIONS = "permissions"
    CI_JOB = "ci job"
    LINK = "link"
    SERVICE_HOOKS = "service hooks"
    DBT_WEBHOOK = "dbt webhook"
    BRANCH_POLICY = "branch policy"


class StepOutcome(StrEnum):
    CREATED = "created"
    REPAIRED = "repaired"
    UNCHANGED = "unchanged"
    LINKED = "linked"
    SKIPPED = "skipped"
    REFUSED = "refused"   # a rule said no (permissions, a disabled repository): a person must act
    FAILED = "failed"


STEP_FAILURES = frozenset({StepOutcome.FAILED, StepOutcome.REFUSED})
