"""The read model of what happened: pull requests and their timelines, repositories' health, deliveries, the
overview. The console's pages and the CLI's ``--json`` read the same functions, so they always agree.

Every function takes a ``Viewer``: admins see everything; other people only repositories of organizations their
own healthy connection reaches (and deliveries, runs and activity of those), so an id of something else is
answered as if it did not exist. Links that came from dbt Cloud are kept only when they are http(s).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, false, func, or_, select
from sqlalchemy.orm import Session, joinedload

from ..deliveries.states import WATCHED
from ..domain import RunKind, RunStatus, normalize_ref
from ..models import (
    Activity,
    CiRun,
    Connection,
    DbtWebhookRecord,
    Delivery,
    HookSubscriptionRecord,
    Organization,
    PullRequestRecord,
    Repository,
    as_utc,
    utcnow,
)
from ..people import PersonId
from . import explain
from .charts import DayRuns

TIMELINE_LIMIT = 200


@dataclass(frozen=True)
class Viewer:
    """Who reads: an admin, or a person who sees what their own connection reaches."""

    admin: bool
    person: PersonId | None = None

    def repositories(self, s: Session) -> ColumnElement[bool] | None:
        """The condition on ``Repository`` of what this viewer may see (None: everything)."""
        if self.admin:
            return None
        if self.person is None:
            return false()
        reached = {o.lower() for c in s.scalars(select(Connection).where(
            Connection.of(self.person), Connection.status == "ok")) for o in (c.organizations or [])}
        return Repository.organization_id.in_(
            select(Organization.id).where(func.lower(Organization.name).in_(sorted(reached))))


ADMIN = Viewer(admin=True)


def _visible(query, seen: ColumnElement[bool] | None):
    """``query`` narrowed to what the viewer may see (``seen``: ``Viewer.repositories``, read once a call)."""
    return query if seen is None else query.where(seen)


def full_name(repo: Repository) -> str:
    return f"{repo.organization.name}/{repo.ado_project_name}/{repo.name}"


def safe_link(url: str | None) -> str | None:
    """A link from dbt Cloud, shown only when it is an http(s) URL (never ``javascript:`` or the like)."""
    return url if url and url.lower().startswith(("https://", "http://")) else None


def repository(s: Session, viewer: Viewer, repository_id: int, *,
               seen: ColumnElement[bool] | None = None) -> Repository | None:
    seen = viewer.repositories(s) if seen is None else seen
    return s.scalar(_visible(select(Repository).where(Repository.id == repository_id), seen))


def repository_named(s: Session, viewer: Viewer, name: str, *,
                     seen: ColumnElement[bool] | None = None) -> Repository | None:
    """``ORGANIZATION/PROJECT/REPOSITORY`` (case-insensitive; the project by name or id), as the CLI and the
    search box take it."""
    parts = [p.strip().lower() for p in name.strip().strip("/").split("/")]
    if len(parts) != 3 or not all(parts):
        return None
    org, project, repo = parts
    query = (select(Repository).join(Organization).where(
        func.lower(Organization.name) == org, func.lower(Repository.name) == repo,
        (func.lower(Repository.ado_project_name) == project) | (func.lower(Repository.ado_project_id) == project)))
    return s.scalar(_visible(query, viewer.repositories(s) if seen is None else seen))


# -- runs ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunRow:
    id: int
    repository: str
    repository_id: int
    pull_request_id: int
    kind: str
    dbt_run_id: int | None
    commit: str | None
    outcome: str
    href: str | None
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None
    message: str | None


def _run_row(run: CiRun, pr: PullRequestRecord, repo: Repository) -> RunRow:
    return RunRow(id=run.id, repository=full_name(repo), repository_id=repo.id, pull_request_id=pr.pull_request_id,
                  kind=run.kind, dbt_run_id=run.dbt_run_id, commit=run.commit, outcome=outcome_of(run),
                  href=safe_link(run.href), started_at=as_utc(run.created_at),
                  finished_at=as_utc(run.finished_at) if run.finished_at else None,
                  duration_seconds=run.duration_seconds, message=run.start_error or run.status_message)


def outcome_of(run: CiRun) -> str:
    return explain.run_outcome(RunStatus.parse(run.status), start_error=run.start_error, superseded=run.superseded,
                               posted_state=run.posted_state, started=run.dbt_run_id is not None)


def runs(s: Session, viewer: Viewer, *, repository_id: int | None = None, pull_request_id: int | None = None,
         since: datetime | None = None, limit: int = 50, seen: ColumnElement[bool] | None = None) -> list[RunRow]:
    """Runs newest first."""
    seen = viewer.repositories(s) if seen is None else seen
    query = (select(CiRun, PullRequestRecord, Repository).options(joinedload(Repository.organization))
             .join(PullRequestRecord, PullRequestRecord.id == CiRun.pull_request_ref)
             .join(Repository, Repository.id == PullRequestRecord.repository_id)
             .order_by(CiRun.id.desc()).limit(limit))
    if repository_id is not None:  # the repository's PRs first: their runs by index, never a scan of every run
        prs = s.scalars(select(PullRequestRecord.id).where(PullRequestRecord.repository_id == repository_id)).all()
        query = query.where(CiRun.pull_request_ref.in_(prs))
    if pull_request_id is not None:
        query = query.where(PullRequestRecord.pull_request_id == pull_request_id)
    if since is not None:
        query = query.where(CiRun.created_at >= since)
    return [_run_row(run, pr, repo) for run, pr, repo in s.execute(_visible(query, seen))]


# -- deliveries ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeliveryRow:
    id: int
    source: str
    event_type: str
    state: str
    repository: str | None
    repository_id: int | None
    pull_request_id: int | None
    dbt_account: int | None
    attempts: int
    error: str | None
    received_at: datetime
    dispatched_at: datetime | None
    processed_at: datetime | None


@dataclass(frozen=True)
class DeliveryFilter:
    states: tuple[str, ...] = ()
    source: str | None = None
    repository_id: int | None = None
    since: datetime | None = None
    before_id: int | None = None   # the next page: ids below this


def _delivery_row(d: Delivery, names: dict[int, str]) -> DeliveryRow:
    return DeliveryRow(id=d.id, source=d.source, event_type=d.event_type, state=d.state,
                       repository=names.get(d.repository_id) if d.repository_id else None,
                       repository_id=d.repository_id, pull_request_id=d.pull_request_id,
                       dbt_account=d.dbt_account_id, attempts=d.attempts, error=d.error,
                       received_at=as_utc(d.received_at), dispatched_at=as_utc(d.dispatched_at) if d.dispatched_at
                       else None, processed_at=as_utc(d.processed_at) if d.processed_at else None)


def _names(s: Session, where: ColumnElement[bool] | None) -> dict[int, str]:
    """ORGANIZATION/PROJECT/REPOSITORY by id of the repositories ``where`` picks (None: all), in one query."""
    query = select(Repository.id, Organization.name, Repository.ado_project_name, Repository.name).join(
        Organization, Organization.id == Repository.organization_id)
    return {id_: f"{org}/{project}/{name}" for id_, org, project, name in s.execute(_visible(query, where))}


def _names_of(s: Session, ids: set[int]) -> dict[int, str]:
    return _names(s, Repository.id.in_(sorted(ids))) if ids else {}


def _delivery_visibility(seen: ColumnElement[bool] | None):
    """Non-admins see deliveries of their repositories only (a dbt Cloud delivery names no repository)."""
    return None if seen is None else Delivery.repository_id.in_(select(Repository.id).where(seen))


def deliveries(s: Session, viewer: Viewer, where: DeliveryFilter = DeliveryFilter(), *,
               limit: int = 50) -> list[DeliveryRow]:
    """Deliveries newest first."""
    query = select(Delivery).order_by(Delivery.id.desc()).limit(limit)
    if (visible := _delivery_visibility(viewer.repositories(s))) is not None:
        query = query.where(visible)
    if where.states:
        query = query.where(Delivery.state.in_(where.states))
    if where.source:
        query = query.where(Delivery.source == where.source)
    if where.repository_id is not None:
        query = query.where(Delivery.repository_id == where.repository_id)
    if where.since is not None:
        query = query.where(Delivery.received_at >= where.since)
    if where.before_id is not None:
        query = query.where(Delivery.id < where.before_id)
    found = list(s.scalars(query))
    names = _names_of(s, {d.repository_id for d in found if d.repository_id})
    return [_delivery_row(d, names) for d in found]


@dataclass(frozen=True)
class DeliveryPage:
    row: DeliveryRow
    dedupe_key: str
    event: dict
    activity: list[Entry]


def delivery(s: Session, viewer: Viewer, delivery_id: int) -> DeliveryPage | None:
    found = s.get(Delivery, delivery_id)
    if found is None or not (viewer.admin or (found.repository_id is not None
                                              and repository(s, viewer, found.repository_id) is not None)):
        return None
    names = _names_of(s, {found.repository_id} if found.repository_id else set())
    entries = [_activity_entry(a, {}) for a in s.scalars(
        select(Activity).where(Activity.delivery_id == delivery_id).order_by(Activity.id.desc()).limit(50))]
    return DeliveryPage(_delivery_row(found, names), found.dedupe_key, dict(found.event or {}), entries)


# -- pull requests ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One line of a timeline: what happened, linking to its delivery and dbt run."""

    at: datetime
    kind: str
    text: str
    actor: str
    delivery_id: int | None = None
    dbt_run_id: int | None = None
    run_href: str | None = None


def _activity_entry(a: Activity, runs_by_id: dict[int, RunRow]) -> Entry:
    """``runs_by_id``: the PR's runs by record id, to link an entry about one (a status posted for it)."""
    run = runs_by_id.get(a.ci_run_id) if a.ci_run_id else None
    return Entry(at=as_utc(a.at), kind=a.kind, text=a.message, actor=a.actor, delivery_id=a.delivery_id,
                 dbt_run_id=a.dbt_run_id or (run.dbt_run_id if run else None), run_href=run.href if run else None)


def _delivery_entry(d: Delivery) -> Entry:
    why = f": {d.error}" if d.error else ""
    return Entry(at=as_utc(d.received_at), kind="delivery", actor=d.source, delivery_id=d.id,
                 text=f"{d.event_type} received as delivery {d.id}, now {d.state}{why}")


@dataclass(frozen=True)
class PullRequestRow:
    repository: str
    repository_id: int
    pull_request_id: int
    title: str
    state: str
    is_draft: bool
    source_ref: str
    target_ref: str
    head_commit: str | None
    last_decision: str | None
    runs: list[RunRow] = field(default_factory=list)


@dataclass(frozen=True)
class PullRequestPage:
    pull_request: PullRequestRow
    known: bool           # the bridge keeps a record of it
    why: str              # the one sentence: why it got (or did not get) a run
    timeline: list[Entry]


def _pr_row(pr: PullRequestRecord, repo: Repository, *, with_runs: bool = False) -> PullRequestRow:
    return PullRequestRow(
        repository=full_name(repo), repository_id=repo.id, pull_request_id=pr.pull_request_id, title=pr.title,
        state=pr.status, is_draft=pr.is_draft, source_ref=pr.source_ref or "", target_ref=pr.target_ref,
        head_commit=pr.head_commit, last_decision=pr.last_reason,
        runs=[_run_row(r, pr, repo) for r in reversed(pr.runs)] if with_runs else [])


def find_pull_requests(s: Session, viewer: Viewer, text: str = "", *, limit: int = 50) -> list[PullRequestRow]:
    """Pull requests, newest first, whose repository (ORGANIZATION/PROJECT/REPOSITORY or any part), number,
    title or branches contain ``text``."""
    seen = viewer.repositories(s)
    query = (select(PullRequestRecord, Repository).join(Repository, Repository.id == PullRequestRecord.repository_id)
             .join(Organization, Organization.id == Repository.organization_id)
             .options(joinedload(Repository.organization)).order_by(PullRequestRecord.id.desc()).limit(limit))
    text = text.strip()
    if text:
        repo = repository_named(s, viewer, text, seen=seen)
        if repo is not None:
            query = query.where(Repository.id == repo.id)
        else:
            like = "%" + escape_like(text.lower()) + "%"
            terms = [func.lower(column).like(like, escape="\\") for column in (
                PullRequestRecord.title, PullRequestRecord.source_ref, PullRequestRecord.target_ref,
                Repository.name, Repository.ado_project_name, Organization.name)]
            if text.lstrip("#").isdigit() and len(text) < 10:
                terms.append(PullRequestRecord.pull_request_id == int(text.lstrip("#")))
            query = query.where(or_(*terms))
    return [_pr_row(pr, repo) for pr, repo in s.execute(_visible(query, seen))]


def escape_like(text: str) -> str:
    """``text`` matched literally by LIKE … ESCAPE '\\' (its % and _ are not wildcards)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def pull_request(s: Session, viewer: Viewer, repository_id: int, pull_request_id: int,
                 now: datetime | None = None) -> PullRequestPage | None:
    """A pull request's state, runs and timeline (newest first), and why; None when its repository is not
    one the viewer may see. A PR the bridge never heard of still has a page: it says so."""
    repo = repository(s, viewer, repository_id)
    if repo is None:
        return None
    record = s.scalar(select(PullRequestRecord).where(PullRequestRecord.repository_id == repository_id,
                                                      PullRequestRecord.pull_request_id == pull_request_id))
    arrived = list(s.scalars(select(Delivery).where(
        Delivery.repository_id == repository_id, Delivery.pull_request_id == pull_request_id)
        .order_by(Delivery.id.desc()).limit(TIMELINE_LIMIT)))
    done = list(s.scalars(select(Activity).where(
        Activity.repository_id == repository_id, Activity.pull_request_id == pull_request_id)
        .order_by(Activity.id.desc()).limit(TIMELINE_LIMIT)))
    if record is not None:
        row = _pr_row(record, repo, with_runs=True)
    else:
        row = PullRequestRow(repository=full_name(repo), repository_id=repo.id, pull_request_id=pull_request_id,
                             title="", state="unknown", is_draft=False, source_ref="", target_ref="",
                             head_commit=None, last_decision=None)
    by_id = {r.id: r for r in row.runs}
    timeline = sorted([_activity_entry(a, by_id) for a in done] + [_delivery_entry(d) for d in arrived],
                      key=lambda e: e.at, reverse=True)[:TIMELINE_LIMIT]
    facts = explain.PullRequestFacts(
        pull_request_id=pull_request_id, known=record is not None,
        state=record.status if record else "unknown", is_draft=bool(record and record.is_draft),
        target_ref=record.target_ref if record else "", head_commit=record.head_commit if record else None,
        last_reason=record.last_reason if record else None,
        reconciled_at=as_utc(record.reconciled_at) if record and record.reconciled_at else None,
        runs=tuple(explain.RunFacts(dbt_run_id=run.dbt_run_id, kind=run.kind, commit=run.commit,
                                    status=RunStatus.parse(run.status), start_error=run.start_error,
                                    superseded=run.superseded, duration_seconds=run.duration_seconds,
                                    status_message=run.status_message)
                   for run in reversed(record.runs if record else [])),
        deliveries=tuple(explain.DeliveryFacts(d.id, d.state, d.error, as_utc(d.received_at)) for d in arrived),
        target_branches=tuple(normalize_ref(b) for b in repo.target_branches or []),
        problems=tuple(_problems(s, repo.id)))
    return PullRequestPage(row, record is not None, explain.why(facts, now or utcnow()), timeline)


# -- repositories -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Subscription:
    kind: str        # an Azure DevOps event type, or "dbt Cloud webhook"
    status: str
    problem: str | None
    last_checked_at: datetime | None


@dataclass(frozen=True)
class RepositoryPage:
    id: int
    name: str
    ci_job_id: int
    status_context: str
    pull_requests: list[PullRequestRow]
    runs: list[RunRow]
    pass_rate: float | None          # of finished CI runs in the window, None when none finished
    median_duration_seconds: float | None
    last_failure: RunRow | None
    subscriptions: list[Subscription]
    window_days: int


def _problems(s: Session, repository_id: int) -> list[str]:
    return problems_by_repository(s, [repository_id]).get(repository_id, [])


def problems_by_repository(s: Session, repository_ids: list[int] | None = None) -> dict[int, list[str]]:
    """What each repository's subscriptions need a person for (two queries, whatever the number)."""
    hooks = select(HookSubscriptionRecord.repository_id, HookSubscriptionRecord.event_type,
                   HookSubscriptionRecord.problem).where(HookSubscriptionRecord.problem.is_not(None))
    webhooks = select(DbtWebhookRecord.repository_id, DbtWebhookRecord.problem).where(
        DbtWebhookRecord.problem.is_not(None))
    if repository_ids is not None:
        hooks = hooks.where(HookSubscriptionRecord.repository_id.in_(repository_ids))
        webhooks = webhooks.where(DbtWebhookRecord.repository_id.in_(repository_ids))
    hook_problems: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for repository_id, event_type, problem in s.execute(hooks.order_by(HookSubscriptionRecord.id)):
        hook_problems[repository_id].append((event_type, problem))
    webhook_problems = dict(s.execute(webhooks).all())
    return {repository_id: describe_problems(hook_problems.get(repository_id, []), webhook_problems.get(repository_id))
            for repository_id in sorted(hook_problems.keys() | webhook_problems.keys())}


def describe_problems(hooks: list[tuple[str, str]], webhook: str | None) -> list[str]:
    """A repository's subscriptions' problems as shown: a problem several service hooks share (the identity lost
    access: all four) once, naming them; then the dbt Cloud webhook's."""
    events: dict[str, list[str]] = {}
    for event, problem in hooks:
        events.setdefault(problem, []).append(event)
    found = [f"{', '.join(names)}: {problem}" for problem, names in events.items()]
    return [*found, f"dbt Cloud webhook: {webhook}"] if webhook else found


def _subscriptions(s: Session, repository_id: int) -> list[Subscription]:
    found = [Subscription(h.event_type, h.status, h.problem, as_utc(h.last_checked_at) if h.last_checked_at else None)
             for h in s.scalars(select(HookSubscriptionRecord).where(
                 HookSubscriptionRecord.repository_id == repository_id).order_by(HookSubscriptionRecord.event_type))]
    webhook = s.scalar(select(DbtWebhookRecord).where(DbtWebhookRecord.repository_id == repository_id))
    if webhook is not None:
        found.append(Subscription("dbt Cloud webhook", webhook.status, webhook.problem,
                                  as_utc(webhook.last_checked_at) if webhook.last_checked_at else None))
    return found


def _finished_ci(rows: list[RunRow]) -> list[RunRow]:
    return [r for r in rows if r.kind == RunKind.CI.value and r.outcome in ("succeeded", "failed")]


def repository_page(s: Session, viewer: Viewer, repository_id: int, *, days: int = 7,
                    now: datetime | None = None) -> RepositoryPage | None:
    seen = viewer.repositories(s)
    repo = repository(s, viewer, repository_id, seen=seen)
    if repo is None:
        return None
    since = (now or utcnow()) - timedelta(days=days)
    prs = [_pr_row(pr, repo) for pr in s.scalars(select(PullRequestRecord).where(
        PullRequestRecord.repository_id == repository_id).order_by(PullRequestRecord.id.desc()).limit(50))]
    recent = runs(s, viewer, repository_id=repository_id, since=since, limit=10_000, seen=seen)
    finished = _finished_ci(recent)
    passed = [r for r in finished if r.outcome == "succeeded"]
    durations = [r.duration_seconds for r in finished if r.duration_seconds is not None]
    last_failure = next((r for r in runs(s, viewer, repository_id=repository_id, limit=200, seen=seen)
                         if r.kind == RunKind.CI.value and r.outcome == "failed"), None)
    return RepositoryPage(
        id=repo.id, name=full_name(repo), ci_job_id=repo.ci_job_id,
        status_context=f"{repo.status_genre}/{repo.status_name}", pull_requests=prs, runs=recent[:20],
        pass_rate=len(passed) / len(finished) if finished else None,
        median_duration_seconds=statistics.median(durations) if durations else None,
        last_failure=last_failure, subscriptions=_subscriptions(s, repo.id), window_days=days)


# -- the overview -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RepositoryHealth:
    id: int
    name: str
    days: list[DayRuns]
    pass_rate: float | None


@dataclass(frozen=True)
class Overview:
    backlog: dict[str, int]                     # deliveries by state, unfinished and failed ones
    repositories: list[RepositoryHealth]        # the busiest in the window, at most CHARTED
    quiet: int                                  # repositories with no CI run in the window (not charted)
    problems: list[tuple[int, str, str]]        # (repository id, name, what its subscriptions need)
    dead_connections: list[tuple[str, str]]     # (sign-in name, why and what to do)
    window_days: int


CHARTED = 50  # repositories drawn on the overview; the rest are counted (each has its own page)


def overview(s: Session, viewer: Viewer, *, days: int = 7, now: datetime | None = None) -> Overview:
    """The delivery backlog, what needs a person, and the busiest repositories' runs per day: a fixed number
    of queries, however many repositories there are."""
    today = (now or utcnow()).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), tzinfo=(now or utcnow()).tzinfo)
    seen = viewer.repositories(s)
    names = _names(s, seen)
    in_window = (select(PullRequestRecord.repository_id)
                 .join(CiRun, CiRun.pull_request_ref == PullRequestRecord.id)
                 .join(Repository, Repository.id == PullRequestRecord.repository_id)
                 .where(CiRun.kind == RunKind.CI.value, CiRun.created_at >= since))
    busiest = [repository_id for repository_id, _ in s.execute(_visible(  # counted by the database
        in_window.add_columns(func.count()).group_by(PullRequestRecord.repository_id)
        .order_by(func.count().desc(), PullRequestRecord.repository_id).limit(CHARTED), seen))]
    counts: dict[int, dict[date, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    query = (select(PullRequestRecord.repository_id, CiRun.created_at, CiRun.status, CiRun.start_error)
             .join(PullRequestRecord, PullRequestRecord.id == CiRun.pull_request_ref)
             .where(CiRun.kind == RunKind.CI.value, CiRun.created_at >= since,
                    PullRequestRecord.repository_id.in_(busiest)))
    for repository_id, created, status, start_error in s.execute(query):  # the charted ones' runs only
        day = as_utc(created).date()
        parsed = RunStatus.parse(status)
        slot = 0 if parsed is RunStatus.SUCCESS else 1 if parsed is RunStatus.ERROR or start_error else 2
        counts[repository_id][day][slot] += 1
    health = []
    for repository_id in busiest:
        per_day = [DayRuns(first + timedelta(days=n), *counts[repository_id][first + timedelta(days=n)])
                   for n in range(days)]
        passed, failed = sum(d.passed for d in per_day), sum(d.failed for d in per_day)
        health.append(RepositoryHealth(repository_id, names.get(repository_id, "?"), per_day,
                                       passed / (passed + failed) if passed + failed else None))
    problems = [(repository_id, names[repository_id], problem)
                for repository_id, found in sorted(problems_by_repository(
                    s, None if viewer.admin else sorted(names)).items())
                if repository_id in names for problem in found]
    backlog_query = (select(Delivery.state, func.count()).where(Delivery.state.in_(sorted(WATCHED)))
                     .group_by(Delivery.state))
    if (visible := _delivery_visibility(seen)) is not None:
        backlog_query = backlog_query.where(visible)
    backlog = dict(s.execute(backlog_query).all())
    dead = []
    if viewer.admin or viewer.person is not None:
        query = select(Connection).where(Connection.status != "ok").order_by(Connection.id)
        if not viewer.admin:
            query = query.where(Connection.of(viewer.person))
        dead = [(c.upn, f"{c.status_reason or 'its tokens no longer work'}: sign in again with “Connect Azure "
                        "DevOps” on the Connections page") for c in s.scalars(query)]
    return Overview(backlog, health, len(names) - len(health), problems, dead, days)


def as_json(value) -> dict:
    """A read-out as JSON-ready primitives (datetimes as ISO 8601), for ``--json``."""
    def plain(v):
        if isinstance(v, datetime | date):
            return v.isoformat()
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        return v

    return plain(asdict(value))
