"""A pull request's CI as the database records it, to and from the domain's values: a repository's CI
settings, a run record as the plan sees it, a run record inserted whole, dbt Cloud's news applied to one."""

from __future__ import annotations

from sqlalchemy import inspect as sa_inspect

from .. import domain
from ..domain import (
    CiSettings,
    DbtRun,
    DraftPolicy,
    RecordedRun,
    RunKind,
    RunStatus,
    StatusContext,
    StatusState,
)
from ..models import CiRun, Repository, utcnow


def ci_settings(repo: Repository) -> CiSettings:
    return CiSettings(
        ci_job_id=repo.ci_job_id,
        status_context=StatusContext(repo.status_genre, repo.status_name),
        target_branches=tuple(domain.normalize_ref(b) for b in (repo.target_branches or [])),
        drafts=DraftPolicy(repo.drafts),
        teardown_job_id=repo.teardown_job_id,
    )


def recorded(run: CiRun) -> RecordedRun:
    return RecordedRun(
        record_id=run.id, kind=RunKind(run.kind), commit=run.commit, iteration_id=run.iteration_id,
        dbt_run_id=run.dbt_run_id, status=RunStatus.parse(run.status), superseded=run.superseded,
        posted_state=StatusState(run.posted_state) if run.posted_state else None, start_error=run.start_error,
        href=run.href, status_message=run.status_message, duration_seconds=run.duration_seconds,
        failure_tally=run.failure_tally)


def whole_run(**values) -> CiRun:
    """A new run record with every column given, so that once inserted it is whole: added to a later session
    it is updated without being read again."""
    unset = {attr.key: None for attr in sa_inspect(CiRun).column_attrs
             if attr.key not in values and not _defaulted(attr.columns[0])}
    return CiRun(**unset, **values)


def _defaulted(column) -> bool:
    """Given a value on INSERT without us: the key, and columns with a default of their own."""
    return column.primary_key or column.default is not None or column.server_default is not None


def apply_run(run: CiRun, dbt_run: DbtRun) -> bool:
    """Copy what dbt Cloud says of a run onto our record; never move a finished run backwards."""
    current = RunStatus.parse(run.status)
    if current is not None and current.is_terminal and not dbt_run.status.is_terminal:
        return False
    changed = run.status != int(dbt_run.status)
    run.status = int(dbt_run.status)
    run.href = dbt_run.href or run.href
    if dbt_run.status_message:
        run.status_message = dbt_run.status_message
    if dbt_run.duration_seconds is not None:
        run.duration_seconds = dbt_run.duration_seconds
    if dbt_run.status.is_terminal and run.finished_at is None:
        run.finished_at = dbt_run.finished_at or utcnow()
    run.updated_at = utcnow()
    return changed
