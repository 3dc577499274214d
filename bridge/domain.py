"""Value types and the pure rules of pull-request CI, and of the subscriptions that feed it.

Nothing here does I/O or imports anything of ours but errors: the reconciler in ``services`` reads the
world through the API clients, asks :func:`plan` what to do, and carries the answer out. Keeping the
decisions here means every CI rule of DESIGN.md is a plain function with plain tests.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

# --------------------------------------------------------------------------------------------------
# Azure DevOps side


class PullRequestStatus(enum.StrEnum):
    ACTIVE = "active"
    ABANDONED = "abandoned"
    COMPLETED = "completed"
    NOT_SET = "notSet"

    @property
    def is_closed(self) -> bool:
        return self in (PullRequestStatus.ABANDONED, PullRequestStatus.COMPLETED)


class StatusState(enum.StrEnum):
    """States of an Azure DevOps pull-request status (GitStatusState)."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ERROR = "error"
    NOT_APPLICABLE = "notApplicable"


class EventType(enum.StrEnum):
    PR_CREATED = "git.pullrequest.created"
    PR_UPDATED = "git.pullrequest.updated"
    PR_MERGED = "git.pullrequest.merged"
    PR_COMMENTED = "ms.vss-code.git-pullrequest-comment-event"


HANDLED_EVENT_TYPES = frozenset(e.value for e in EventType)

# The repository every "Test" delivery of Azure DevOps' service-hook dialog points at (docs sample data).
SAMPLE_REPOSITORY_ID = "4bc14d40-c903-45e2-872e-0462c7748079"

RERUN_COMMAND = "/dbt rerun"


def is_rerun_command(comment: str | None) -> bool:
    """A PR comment starting with ``/dbt rerun`` asks for a fresh run of the head commit."""
    return bool(comment) and comment.strip().lower().startswith(RERUN_COMMAND)


@dataclass(frozen=True)
class PullRequestEvent:
    """A pull-request service-hook delivery, reduced to what the bridge acts on.

    It is only a hint: the worker re-reads the pull request before acting.
    """

    event_id: str
    event_type: str
    subscription_id: str | None
    notification_id: int | None
    repository_id: str
    project_id: str | None
    pull_request_id: int
    status: PullRequestStatus
    is_draft: bool
    source_commit: str | None
    target_ref: str | None
    merge_status: str | None
    comment: str | None = None

    @property
    def dedupe_key(self) -> str:
        return f"{self.event_type}:{self.event_id}"

    @property
    def is_sample(self) -> bool:
        """True for the fabricated data Azure DevOps sends from the subscription dialog's Test button."""
        return self.repository_id == SAMPLE_REPOSITORY_ID

    @property
    def requests_rerun(self) -> bool:
        return is_rerun_command(self.comment)


@dataclass(frozen=True)
class IgnoredEvent:
    """A well-formed delivery of an event type the bridge does not act on (answered 200)."""

    event_id: str
    event_type: str

    @property
    def dedupe_key(self) -> str:
        return f"{self.event_type}:{self.event_id}"


@dataclass(frozen=True)
class PullRequest:
    """The pull request as Azure DevOps reports it now."""

    pull_request_id: int
    repository_id: str
    status: PullRequestStatus
    is_draft: bool
    source_ref: str
    target_ref: str
    head_commit: str | None
    title: str = ""
    merge_status: str | None = None


@dataclass(frozen=True)
class Iteration:
    iteration_id: int
    source_commit: str | None


@dataclass(frozen=True)
class StatusContext:
    genre: str
    name: str

    def __str__(self) -> str:  # the string admins type into the branch policy
        return f"{self.genre}/{self.name}"


@dataclass(frozen=True)
class PrThread:
    """A pull request's comment thread as the bridge reads it: found again by its properties, never its text."""

    id: int
    status: str                 # active, fixed, closed … (Azure DevOps' words)
    properties: dict[str, str]  # values as text
    first_comment_id: int | None
    first_comment: str


@dataclass(frozen=True)
class StatusUpdate:
    state: StatusState
    description: str
    iteration_id: int
    target_url: str | None = None


# --------------------------------------------------------------------------------------------------
# dbt Cloud side


class RunStatus(enum.IntEnum):
    QUEUED = 1
    STARTING = 2
    RUNNING = 3
    SUCCESS = 10
    ERROR = 20
    CANCELLED = 30

    @property
    def is_terminal(self) -> bool:
        return self >= RunStatus.SUCCESS

    @classmethod
    def parse(cls, value: int | str | None) -> RunStatus | None:
        try:
            return cls(int(value)) if value is not None else None
        except ValueError:
            return None


@dataclass(frozen=True)
class DbtRun:
    run_id: int
    status: RunStatus
    href: str | None = None
    status_message: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    git_sha: str | None = None

    @classmethod
    def timed(cls, run_id: int, status: RunStatus, *, started_at: datetime | None, finished_at: datetime | None,
              **rest) -> DbtRun:
        """A run whose duration is the time from its start to its end, when both are known."""
        duration = (finished_at - started_at).total_seconds() if started_at and finished_at else None
        return cls(run_id=run_id, status=status, started_at=started_at, finished_at=finished_at,
                   duration_seconds=duration, **rest)


@dataclass(frozen=True)
class DbtRunEvent:
    """A dbt Cloud run webhook (job.run.started / completed / errored)."""

    event_id: str
    event_type: str
    account_id: int
    run_id: int
    job_id: int | None
    status: RunStatus | None
    status_message: str | None
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def dedupe_key(self) -> str:
        return self.event_id

    def run(self) -> DbtRun | None:
        """What the webhook says of its run; None when it carries no status."""
        if self.status is None:
            return None
        return DbtRun.timed(self.run_id, self.status, status_message=self.status_message,
                            started_at=self.started_at, finished_at=self.finished_at)


# --------------------------------------------------------------------------------------------------
# Per-repository CI settings and the bridge's own record of runs


class DraftPolicy(enum.StrEnum):
    SKIP = "skip"
    RUN = "run"


@dataclass(frozen=True)
class CiSettings:
    ci_job_id: int
    status_context: StatusContext
    target_branches: tuple[str, ...] = ()
    drafts: DraftPolicy = DraftPolicy.SKIP
    teardown_job_id: int | None = None

    def targets(self, ref: str) -> bool:
        return not self.target_branches or normalize_ref(ref) in self.target_branches


class RunKind(enum.StrEnum):
    CI = "ci"
    TEARDOWN = "teardown"


@dataclass(frozen=True)
class RecordedRun:
    """A dbt run the bridge started, as the bridge's database remembers it."""

    record_id: int
    kind: RunKind
    commit: str | None
    iteration_id: int | None
    dbt_run_id: int | None
    status: RunStatus | None
    superseded: bool = False
    posted_state: StatusState | None = None
    start_error: str | None = None
    href: str | None = None
    status_message: str | None = None
    duration_seconds: float | None = None
    failure_tally: str | None = None  # what failed, counted from the run's results ("2 models, 1 test")

    @property
    def is_live(self) -> bool:
        return self.dbt_run_id is not None and (self.status is None or not self.status.is_terminal)


# --------------------------------------------------------------------------------------------------
# Rules


def normalize_ref(ref: str) -> str:
    return ref if ref.startswith("refs/") else f"refs/heads/{ref}"


def branch_name(ref: str | None) -> str:
    """A ref as people name the branch: ``refs/heads/feature/x`` → ``feature/x``."""
    return (ref or "").removeprefix("refs/heads/")


# A pull request record's statuses after which nothing more is built for it.
CLOSED_STATES = ("completed", "abandoned", "deleted")


def pr_schema(job_id: int, pull_request_id: int) -> str:
    """The per-PR schema dbt Cloud's native CI uses; its cleanup service looks for this prefix."""
    return f"dbt_cloud_pr_{job_id}_{pull_request_id}"


CAUSE_MAX = 255


def run_cause(pr: PullRequest, *, kind: RunKind = RunKind.CI) -> str:
    if kind is RunKind.TEARDOWN:
        text = f"Azure DevOps PR #{pr.pull_request_id} {pr.status.value}: drop its CI schema"
    else:
        head = (pr.head_commit or "")[:8]
        text = f"Azure DevOps PR #{pr.pull_request_id} @ {head}: {pr.title}".rstrip(": ")
    return text[:CAUSE_MAX]


def iteration_for(commit: str | None, iterations: list[Iteration]) -> int | None:
    """The newest iteration whose source commit is ``commit``; else the newest iteration."""
    if not iterations:
        return None
    matching = [it.iteration_id for it in iterations if commit and it.source_commit == commit]
    return max(matching) if matching else max(it.iteration_id for it in iterations)


def short(sha: str | None) -> str:
    return (sha or "")[:8]


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = round(seconds)
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


DESCRIPTION_MAX = 400


def run_line(verdict: str, what: str, *, run_id: int, duration: str | None) -> str:
    """"dbt Cloud CI failed: 2 models, 1 test (run 1234, 4m 12s)": the status's and the summary's sentence."""
    return f"dbt Cloud CI {verdict}: {what} (run {run_id}" + (f", {duration})" if duration else ")")


def status_for_run(run: DbtRun, *, cancelled_by_bridge: bool = False,
                   failed: str | None = None) -> tuple[StatusState, str]:
    """Map a dbt run to the PR status a developer sees, with a description they can act on:
    what ran (commit), how long it took, and why it failed — what failed (``failed``, counted from the run's
    results: "2 models, 1 test"), else dbt Cloud's message."""
    spent = format_duration(run.duration_seconds)
    took = f" in {spent}" if spent else ""
    of = f" for {short(run.git_sha)}" if run.git_sha else ""
    message = (run.status_message or "").strip()
    if message.lower() == "none":  # dbt's webhook sends the string "None"
        message = ""
    match run.status:
        case RunStatus.QUEUED:
            text = f"dbt Cloud CI run{of} queued"
            state = StatusState.PENDING
        case RunStatus.STARTING:
            text = f"dbt Cloud CI run{of} starting"
            state = StatusState.PENDING
        case RunStatus.RUNNING:
            text = f"dbt Cloud CI run{of} in progress"
            state = StatusState.PENDING
        case RunStatus.SUCCESS:
            text = f"dbt Cloud CI passed{of}{took}"
            state = StatusState.SUCCEEDED
        case RunStatus.ERROR if failed:
            text = run_line("failed", failed, run_id=run.run_id, duration=spent or None)
            return StatusState.FAILED, (text + (f" — {message}" if message else ""))[:DESCRIPTION_MAX]
        case RunStatus.ERROR:
            text = f"dbt Cloud CI failed{of}{took}" + (f": {message}" if message else "")
            state = StatusState.FAILED
        case RunStatus.CANCELLED if cancelled_by_bridge:
            text = f"dbt Cloud CI run{of} superseded by a newer push"
            state = StatusState.NOT_APPLICABLE
        case _:
            text = f"dbt Cloud CI run{of} was cancelled in dbt Cloud" + (f": {message}" if message else "")
            state = StatusState.ERROR
    return state, f"{text} (run {run.run_id})"[:DESCRIPTION_MAX]


# --------------------------------------------------------------------------------------------------
# The plan: what to do to make the world match the pull request


@dataclass(frozen=True)
class TriggerRun:
    kind: RunKind
    commit: str | None
    iteration_id: int | None


@dataclass(frozen=True)
class CancelRun:
    record_id: int
    dbt_run_id: int
    reason: str  # "superseded" | "closed" | "not-applicable"


@dataclass(frozen=True)
class PostStatus:
    record_id: int
    update: StatusUpdate


@dataclass(frozen=True)
class Plan:
    triggers: list[TriggerRun] = field(default_factory=list)
    cancels: list[CancelRun] = field(default_factory=list)
    statuses: list[PostStatus] = field(default_factory=list)
    reason: str = ""

    @property
    def is_empty(self) -> bool:
        return not (self.triggers or self.cancels or self.statuses)


def wanted_status(run: RecordedRun, head: str | None) -> StatusUpdate | None:
    """The status ``run``'s iteration should show now, or None when it should be left alone."""
    if run.kind is not RunKind.CI or run.iteration_id is None:
        return None
    if run.commit != head:
        stale = run.is_live or run.superseded or run.posted_state is StatusState.PENDING
        if stale:
            return StatusUpdate(StatusState.NOT_APPLICABLE,
                                f"Superseded by a newer push ({short(head)})" if head else "No longer built",
                                run.iteration_id)
        return None
    if run.start_error:
        return StatusUpdate(StatusState.ERROR, f"Could not start dbt Cloud CI: {run.start_error}"[:DESCRIPTION_MAX],
                            run.iteration_id)
    if run.dbt_run_id is None:
        return None
    state, description = status_for_run(
        DbtRun(run.dbt_run_id, run.status or RunStatus.QUEUED, run.href, run.status_message,
               duration_seconds=run.duration_seconds, git_sha=run.commit),
        cancelled_by_bridge=run.superseded, failed=run.failure_tally)
    return StatusUpdate(state, description, run.iteration_id, run.href)


def wants_results(run: RecordedRun, head: str | None, *, has_thread: bool) -> bool:
    """Whether a settled run's results are worth reading: a failed CI run of the head (its status counts what
    failed, its summary lists it), or a passing one whose PR has a summary thread to resolve."""
    if run.kind is not RunKind.CI or run.commit != head:
        return False
    return run.status is RunStatus.ERROR or (run.status is RunStatus.SUCCESS and has_thread)


def needs_post(run: RecordedRun, head: str | None) -> StatusUpdate | None:
    update = wanted_status(run, head)
    if update is None or update.state is run.posted_state:
        return None
    return update


def plan(pr: PullRequest | None, runs: list[RecordedRun], settings: CiSettings, *, rerun: bool = False) -> Plan:
    """Decide what makes the world match ``pr``: one live CI run for its head commit, nothing stale,
    and every iteration that had a run showing the status it should.

    ``pr`` is None when Azure DevOps no longer knows the pull request (deleted): it is treated as closed
    without a teardown, since nothing tells us its schema was ever built. A trigger's iteration is left
    for the caller to find (it costs an API call, needed only when a run starts).
    """
    ci_runs = [r for r in runs if r.kind is RunKind.CI]
    live = [r for r in ci_runs if r.is_live]

    if pr is None or pr.status.is_closed:
        cancels = [CancelRun(r.record_id, r.dbt_run_id, "closed") for r in live if r.dbt_run_id]
        triggers = []
        already_torn_down = any(r.kind is RunKind.TEARDOWN for r in runs)
        if pr is not None and settings.teardown_job_id and ci_runs and not already_torn_down:
            triggers.append(TriggerRun(RunKind.TEARDOWN, None, None))
        return Plan(triggers=triggers, cancels=cancels, reason=f"pull request {pr.status if pr else 'deleted'}")

    if not settings.targets(pr.target_ref):
        cancels = [CancelRun(r.record_id, r.dbt_run_id, "not-applicable") for r in live if r.dbt_run_id]
        return Plan(cancels=cancels, reason=f"target branch {pr.target_ref} is not built")

    if pr.is_draft and settings.drafts is DraftPolicy.SKIP:
        cancels = [CancelRun(r.record_id, r.dbt_run_id, "not-applicable") for r in live if r.dbt_run_id]
        return Plan(cancels=cancels, reason="draft pull request (skipped until published)")

    if not pr.head_commit:
        return Plan(reason="pull request has no source commit yet")

    head = pr.head_commit
    cancels = [CancelRun(r.record_id, r.dbt_run_id, "superseded")
               for r in live if r.commit != head and r.dbt_run_id]
    for_head = [r for r in ci_runs if r.commit == head]
    latest_for_head = max(for_head, key=lambda r: r.record_id) if for_head else None
    statuses = []
    for r in ci_runs:
        if r.commit == head and r is not latest_for_head:
            continue  # an older run of the head commit (before a rerun) must not overwrite the newer one
        update = needs_post(r, head)
        if update is not None:
            statuses.append(PostStatus(r.record_id, update))

    head_live = any(r.is_live for r in for_head)
    if latest_for_head is None or (rerun and not head_live):
        return Plan(triggers=[TriggerRun(RunKind.CI, head, None)], cancels=cancels, statuses=statuses,
                    reason="rerun requested" if for_head else f"new head commit {short(head)}")
    return Plan(cancels=cancels, statuses=statuses,
                reason=f"head {short(head)} already has run record {latest_for_head.record_id}")


# --------------------------------------------------------------------------------------------------
# Onboarding: the subscriptions that feed the bridge, and what to do when they are unwell

# The service-hook subscriptions one repository needs, with the resource version each is asked for (the
# comment event's documented payloads are 2.0). ``git.pullrequest.updated`` is not split by notificationType:
# pushes, status changes, publishing a draft and retargeting all arrive on it, and missing one costs a build.
HOOK_EVENTS: tuple[tuple[str, str], ...] = (
    (EventType.PR_CREATED.value, "1.0"),
    (EventType.PR_UPDATED.value, "1.0"),
    (EventType.PR_MERGED.value, "1.0"),
    (EventType.PR_COMMENTED.value, "2.0"),
)
DBT_WEBHOOK_EVENTS = ("job.run.completed", "job.run.errored")
SERVICES_API_VERSION = "7.1"  # Azure DevOps Services; an organization asking for less is an Azure DevOps Server
# Azure DevOps' rate limit: 200 TSTUs per identity in a sliding five-minute window (reference/azure_devops.md §6).
RATE_LIMIT_TSTU = 200
RATE_LIMIT_WINDOW_SECONDS = 300.0


def is_server(api_version: str) -> bool:
    return api_version != SERVICES_API_VERSION


def hook_events(api_version: str) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """(the subscriptions to make, with their resource versions; those not made, with why) for an organization
    at ``api_version``. On Azure DevOps Server every event is asked for at resource version 1.0, so the comment
    event, whose payloads are documented at 2.0 only, is not subscribed: /dbt commands are unavailable there."""
    if not is_server(api_version):
        return HOOK_EVENTS, ()
    made = tuple((event, version) for event, version in HOOK_EVENTS if version == "1.0")
    skipped = tuple((event, "on Azure DevOps Server the bridge subscribes at resource version 1.0 only, and this "
                            f"event's payload needs {version}: /dbt commands are unavailable here")
                    for event, version in HOOK_EVENTS if version != "1.0")
    return made, skipped


class HookStatus(enum.StrEnum):
    """Azure DevOps' SubscriptionStatus, plus "missing" (the bridge knows it; Azure DevOps does not)."""

    ENABLED = "enabled"
    ON_PROBATION = "onProbation"
    DISABLED_BY_USER = "disabledByUser"
    DISABLED_BY_SYSTEM = "disabledBySystem"
    DISABLED_BY_INACTIVE_IDENTITY = "disabledByInactiveIdentity"
    MISSING = "missing"

    @classmethod
    def parse(cls, value: str | None) -> HookStatus:
        try:
            return cls(value or "enabled")
        except ValueError:
            return cls.DISABLED_BY_SYSTEM  # an unknown verdict is treated as the worst one


@dataclass(frozen=True)
class HookSubscription:
    """A Web Hooks subscription as Azure DevOps reports it (passwords are never reported back)."""

    subscription_id: str
    event_type: str
    status: HookStatus
    url: str
    username: str
    project_id: str | None = None
    repository_id: str | None = None
    resource_version: str | None = None
    created_by: str | None = None


@dataclass(frozen=True)
class DbtWebhook:
    webhook_id: str
    name: str
    url: str
    event_types: tuple[str, ...]
    job_ids: tuple[int, ...]
    active: bool
    deactivate_reason: str | None = None
    hmac_secret: str | None = None   # only in the answer to a create


class Repair(enum.StrEnum):
    NONE = "none"            # healthy
    UPDATE = "update"        # change it in place (re-enable, new URL, other jobs)
    RECREATE = "recreate"    # delete what is there and create it again
    SURFACE = "surface"      # a person must act; say so


@dataclass(frozen=True)
class Verdict:
    repair: Repair
    reason: str


def hook_verdict(status: HookStatus, *, url_ok: bool, by_admin: bool) -> Verdict:
    """What to do about one of the bridge's service-hook subscriptions.

    ``by_admin``: an admin is (re)running set-up, which repairs everything it can, including what a person
    disabled; the periodic health check respects a person's choice and a lost creator, and reports them.
    """
    if status is HookStatus.MISSING:
        return Verdict(Repair.RECREATE, "missing from Azure DevOps")
    if status is HookStatus.DISABLED_BY_SYSTEM:
        return Verdict(Repair.RECREATE, "disabled by Azure DevOps after failed deliveries (a PUT cannot revive it)")
    if status is HookStatus.DISABLED_BY_INACTIVE_IDENTITY:
        if by_admin:
            return Verdict(Repair.RECREATE, "its creator lost access; created again by the admin running set-up")
        return Verdict(Repair.SURFACE, "disabled because its creator lost access: re-run set-up for this "
                                       "repository as someone with Edit subscriptions permission")
    if status is HookStatus.DISABLED_BY_USER:
        if by_admin:
            return Verdict(Repair.UPDATE, "disabled by a person; re-enabled by set-up")
        return Verdict(Repair.SURFACE, "disabled by a person in Azure DevOps: re-enable it there, or re-run "
                                       "set-up for this repository")
    if not url_ok:
        return Verdict(Repair.UPDATE, "points at another URL than the bridge's")
    if status is HookStatus.ON_PROBATION:
        return Verdict(Repair.UPDATE, "on probation after failed deliveries; re-enabled")
    return Verdict(Repair.NONE, "enabled")


def dbt_webhook_verdict(hook: DbtWebhook | None, *, url: str, job_ids: tuple[int, ...]) -> Verdict:
    """What to do about the dbt Cloud webhook subscription that reports a repository's CI runs."""
    if hook is None:
        return Verdict(Repair.RECREATE, "missing from dbt Cloud")
    if not hook.active:
        return Verdict(Repair.UPDATE, f"deactivated by dbt Cloud ({hook.deactivate_reason or 'no reason given'})"
                                      "; re-activated")
    if hook.url != url or not set(job_ids) <= set(hook.job_ids) or not set(DBT_WEBHOOK_EVENTS) <= set(
            hook.event_types):
        return Verdict(Repair.UPDATE, "reports other jobs, events or URL than the bridge needs")
    return Verdict(Repair.NONE, "active")


@dataclass(frozen=True)
class StatusPolicy:
    """A "Status" branch policy that requires the bridge's status (genre/name) to succeed on PRs into a branch."""

    repository_id: str
    target_branch: str
    context: StatusContext
    reset_on_new_changes: bool = True

    @property
    def target_ref(self) -> str:
        return normalize_ref(self.target_branch)


DEFAULT_CI_STEPS = ("dbt build --select state:modified+",)


@dataclass(frozen=True)
class CiJobSpec:
    """A dbt Cloud CI job the bridge creates and triggers, deferring to another environment's state."""

    account_id: int
    project_id: int
    environment_id: int
    name: str
    deferring_environment_id: int | None
    steps: tuple[str, ...] = DEFAULT_CI_STEPS
