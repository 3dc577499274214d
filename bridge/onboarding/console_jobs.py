"""Console requests carried out by a worker: the web tier stores an ``OnboardingJob`` and sends its id; this
runs it with ``Onboarding`` and writes progress and results back for the page to show."""

from __future__ import annotations

import logging

from sqlalchemy import select

from ..catalog import to_json
from ..contracts import JobKind
from ..db import Database
from ..errors import BridgeError
from ..models import DbtAccount, OnboardingJob
from ..people import PersonId
from . import Actor, NewJob, Onboarding, SetupRequest

log = logging.getLogger(__name__)


def _setup_request(p: dict) -> SetupRequest:
    new_job = None
    if p.get("environment_id"):
        new_job = NewJob(environment_id=int(p["environment_id"]),
                         deferring_environment_id=int(p["defer_to"]) if p.get("defer_to") else None,
                         name=p.get("job_name") or NewJob.name, steps=tuple(p.get("job_steps") or NewJob.steps))
    return SetupRequest(
        organization=p["organization"], project=p["project"], repository=p["repository"],
        dbt_account=int(p["dbt_account"]), ci_job=int(p["ci_job"]) if p.get("ci_job") else None, new_job=new_job,
        teardown_job=int(p["teardown_job"]) if p.get("teardown_job") else None,
        target_branch=p.get("target_branch") or "main", policy=bool(p.get("policy")),
        reset_on_new_changes=bool(p.get("reset_on_new_changes", True)), drafts=p.get("drafts") or "skip",
        only=tuple(p.get("only") or ()))


def _progress(db: Database, job_id: int, **fields) -> None:
    with db.session() as s:
        job = s.get(OnboardingJob, job_id)
        for key, value in fields.items():
            setattr(job, key, value)


ACCOUNT_SAVED = "dbt account saved"  # what run() returns when a token was saved: refused runs may start now


def run(db: Database, onboarding: Onboarding, job_id: int) -> str:
    with db.session() as s:
        job = s.get(OnboardingJob, job_id)
        if job is None or job.state in ("done", "failed"):
            return "gone" if job is None else job.state  # a redelivered task: already carried out
        kind, params = job.kind, dict(job.params)
        job.state = "running"
    person = params.get("as_person") or None
    actor = Actor.of(PersonId(person["tid"], person["oid"]), person.get("name") or "") if person else \
        Actor.of(None, otherwise=params.get("by_name") or "the console admin")
    try:
        if kind == JobKind.PROJECTS:
            result = {"projects": [to_json(p) for p in onboarding.projects(actor, params["organization"])]}
        elif kind == JobKind.REPOSITORIES:
            result = {"repositories": [to_json(r) for r in onboarding.repositories(
                actor, params["organization"], params["project"])]}
        elif kind == JobKind.DBT:
            with db.session() as s:
                accounts = sorted(s.scalars(select(DbtAccount.id)).all())
            result = {"accounts": [to_json(onboarding.dbt_catalog(a)) for a in accounts]}
        elif kind == JobKind.DBT_ACCOUNT:  # the token is saved only if dbt Cloud accepts it
            token = onboarding.box.decrypt(params.pop("token_enc"))
            _progress(db, job_id, params=params)  # the job keeps no secret, whatever happens next
            catalog = onboarding.save_dbt_account(int(params["dbt_account"]), params["url"], token)
            result = {"jobs": len(catalog.jobs), "environments": len(catalog.environments)}
            _progress(db, job_id, result=result, state="done")
            return ACCOUNT_SAVED
        elif kind == JobKind.SETUP:
            report = onboarding.setup(_setup_request(params), actor)
            _progress(db, job_id, steps=[s.as_dict() for s in report.steps],
                      result={"outcome": report.outcome, "repository_id": report.repository_id,
                              "failed_steps": report.failed_steps},
                      state="failed" if report.outcome == "failed" else "done")
            return report.outcome
        elif kind == JobKind.UNLINK:
            steps = onboarding.unlink(int(params["repository_id"]), actor,
                                      remove_policy=bool(params.get("remove_policy")))
            _progress(db, job_id, steps=[s.as_dict() for s in steps], result={"outcome": "unlinked"}, state="done")
            return "unlinked"
        else:
            raise BridgeError(f"unknown onboarding job kind {kind!r}")
    except BridgeError as exc:
        log.warning("onboarding job %s (%s) failed: %s", job_id, kind, str(exc)[:300])
        _progress(db, job_id, state="failed", error=str(exc)[:1000])
        return "failed"
    _progress(db, job_id, result=result, state="done")
    return "done"
