"""Console pages for importing a repository in a couple of clicks: organization → project → repository →
dbt Cloud job → confirm, then each step's result; the linked repositories with their subscriptions' health,
and undo.

The web tier never calls Azure DevOps or dbt Cloud: each page that needs them stores an ``OnboardingJob`` and
sends it to the workers; the job's page refreshes itself until the answer is there. People signed in with
Entra ID act as themselves (their connection's token, their permissions); the local admin token acts as each
organization's configured identity.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, redirect, request, session, url_for
from sqlalchemy import delete, func, select

from .. import catalog
from ..contracts import JobKind, SetupStep
from ..errors import ConfigError
from ..models import (
    Connection,
    DbtAccount,
    DbtWebhookRecord,
    HookSubscriptionRecord,
    OnboardingJob,
    Organization,
    Repository,
    utcnow,
)
from ..urls import check_base_url
from .pages import admins_only, check_csrf, is_admin, page, signed_in
from .services import services

bp = Blueprint("onboarding", __name__)

PAGE_SIZE = 25


def _acting_upn() -> str | None:
    """Whose Azure DevOps token onboarding uses: the signed-in person's (Entra sign-in), or None (the local
    admin token: each organization's configured identity)."""
    return session["user"] if session.get("via") == "entra" else None


JOBS_KEPT = timedelta(days=7)


def _start(kind: JobKind, params: dict) -> int:
    with services().db.session() as s:
        s.execute(delete(OnboardingJob).where(OnboardingJob.created_at < utcnow() - JOBS_KEPT))  # old pages go
        job = OnboardingJob(kind=kind, requested_by=session["user"],
                            params={**params, "as_upn": _acting_upn()}, steps=[], result={})
        s.add(job)
        s.flush()
        job_id = job.id
    if not services().dispatcher.run_onboarding_job(job_id):
        with services().db.session() as s:
            job = s.get(OnboardingJob, job_id)
            job.state, job.error = "failed", "the workers cannot be reached (broker down); try again shortly"
    return job_id


def _job_or_404(job_id: int) -> OnboardingJob:
    with services().db.session() as s:
        job = s.get(OnboardingJob, job_id)
        if job is None or not (is_admin() or job.requested_by == session.get("user")):
            abort(404)
        s.expunge(job)
        return job


# -- linked repositories ----------------------------------------------------------------------------------

@bp.get("/console/repositories")
@signed_in
def repositories():
    with services().db.session() as s:
        rows = []
        for repo in s.scalars(select(Repository).order_by(Repository.id)):
            hooks = s.scalars(select(HookSubscriptionRecord).where(
                HookSubscriptionRecord.repository_id == repo.id)).all()
            webhook = s.scalar(select(DbtWebhookRecord).where(DbtWebhookRecord.repository_id == repo.id))
            problems = [f"{h.event_type}: {h.problem}" for h in hooks if h.problem]
            if webhook is not None and webhook.problem:
                problems.append(f"dbt Cloud webhook: {webhook.problem}")
            rows.append({"id": repo.id, "name": f"{repo.organization.name}/{repo.ado_project_name}/{repo.name}",
                         "job": repo.ci_job_id, "context": f"{repo.status_genre}/{repo.status_name}",
                         "policy": repo.policy_id, "hooks": sum(1 for h in hooks if h.status == "enabled"),
                         "hook_total": len(hooks), "webhook": webhook.status if webhook else "—",
                         "problems": problems, "by": repo.set_up_by or "configuration file"})
    return page("repositories", "repositories.html", message=request.args.get("message", ""), rows=rows,
                admin=is_admin())


@bp.post("/console/repositories/<int:repository_id>/unlink")
@admins_only
def unlink(repository_id: int):
    check_csrf()
    with services().db.session() as s:
        if s.get(Repository, repository_id) is None:
            abort(404)
    job_id = _start(JobKind.UNLINK, {"repository_id": repository_id,
                               "remove_policy": bool(request.form.get("remove_policy"))})
    return redirect(url_for("onboarding.job", job_id=job_id))


# -- dbt Cloud accounts ------------------------------------------------------------------------------------

@bp.get("/console/dbt-accounts")
@admins_only
def dbt_accounts():
    with services().db.session() as s:
        accounts = [{"id": a.id, "url": a.url, "token": bool(a.api_token_enc), "secret": bool(a.webhook_secret_enc)}
                    for a in s.scalars(select(DbtAccount).order_by(DbtAccount.id))]
    return page("dbt Cloud accounts", "dbt_accounts.html", accounts=accounts)


@bp.post("/console/dbt-accounts")
@admins_only
def save_dbt_account():
    check_csrf()
    account_id, token = _int("account_id"), request.form.get("api_token", "").strip()
    box = services().box
    try:
        url = check_base_url(request.form.get("url", "").strip(),
                             allow_insecure_http=services().settings.allow_insecure_http, what="access URL")
    except ConfigError as exc:
        return page("dbt Cloud accounts", message=str(exc), error=True, status=400)
    if not account_id or not token:
        return page("dbt Cloud accounts", message="Give the account id and a service token.", error=True,
                    status=400)
    if box is None:
        return page("dbt Cloud accounts", message="BRIDGE_SECRET_KEY is not set: secrets cannot be stored.",
                    error=True, status=503)
    with services().db.session() as s:
        account = s.get(DbtAccount, account_id)
        if account is None:
            account = DbtAccount(id=account_id, url=url)
            s.add(account)
        account.url, account.api_token_enc = url, box.encrypt(token)
    return redirect(url_for("onboarding.job", job_id=_start(JobKind.DBT_ACCOUNT, {"dbt_account": account_id})))


# -- import: organization → project → repository → job → confirm -----------------------------------------

@bp.get("/console/import")
@signed_in
def choose_organization():
    upn = _acting_upn()
    with services().db.session() as s:
        if upn:
            mine = s.scalars(select(Connection).where(func.lower(Connection.upn) == upn)).all()
            if not any(c.status == "ok" for c in mine):
                return page("import", "import/connect_first.html")
            organizations = sorted({o for c in mine if c.status == "ok" for o in (c.organizations or [])})
        else:
            organizations = sorted(s.scalars(select(Organization.name)).all())
        accounts = s.scalars(select(DbtAccount.id)).all()
    if not accounts and is_admin():
        return page("import", "import/no_dbt_account.html")
    return page("import", "import/organization.html", organizations=organizations, who=upn, admin=is_admin())


@bp.get("/console/import/projects")
@signed_in
def find_projects():
    org = request.args.get("org", "").strip()
    if not org:
        return redirect(url_for("onboarding.choose_organization"))
    return redirect(url_for("onboarding.job", job_id=_start(JobKind.PROJECTS, {"organization": org})))


@bp.get("/console/import/repositories")
@signed_in
def find_repositories():
    org, project = request.args.get("org", "").strip(), request.args.get("project", "").strip()
    if not org or not project:
        return redirect(url_for("onboarding.choose_organization"))
    return redirect(url_for("onboarding.job", job_id=_start(JobKind.REPOSITORIES, {"organization": org,
                                                                             "project": project})))


@bp.get("/console/import/setup")
@admins_only
def choose_job():
    params = {k: request.args.get(a, "").strip() for k, a in (("organization", "org"), ("project", "project"),
                                                              ("repository", "repo"))}
    if not all(params.values()):
        return redirect(url_for("onboarding.choose_organization"))
    params["repository_name"] = request.args.get("name", "").strip()[:300]
    return redirect(url_for("onboarding.job", job_id=_start(JobKind.DBT, params)))


def _int(name: str) -> int | None:
    value = request.form.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit():
        abort(400, f"{name} must be a number")
    return int(value)


@bp.post("/console/import/setup")
@admins_only
def confirm_setup():
    check_csrf()
    form = request.form
    params = {"organization": form.get("organization", ""), "project": form.get("project", ""),
              "repository": form.get("repository", ""), "dbt_account": _int("dbt_account"),
              "target_branch": form.get("target_branch", "main").strip() or "main",
              "policy": form.get("policy") == "1", "reset_on_new_changes": form.get("reset_on_new_changes") == "1",
              "drafts": "run" if form.get("drafts") == "run" else "skip", "teardown_job": _int("teardown_job")}
    if form.get("job_choice") == "create":
        steps = [line.strip() for line in form.get("job_steps", "").splitlines() if line.strip()]
        if any(not step.startswith("dbt ") for step in steps):
            return page("import", message="Each job step is a dbt command (starting with 'dbt ').", error=True,
                        status=400)
        params.update(environment_id=_int("environment_id"), defer_to=_int("defer_to"),
                      job_name=form.get("job_name", "").strip() or None, job_steps=steps)
        missing = not params["environment_id"]
    else:
        params["ci_job"] = _int("ci_job")
        missing = not params["ci_job"]
    if missing or not all(params[k] for k in ("organization", "project", "repository", "dbt_account")):
        return page("import", message="Choose a repository, a dbt Cloud account and a CI job (or an environment "
                                          "to create one in).", error=True, status=400)
    return redirect(url_for("onboarding.job", job_id=_start(JobKind.SETUP, params)))


@bp.post("/console/jobs/<int:job_id>/retry")
@admins_only
def retry(job_id: int):
    check_csrf()
    job = _job_or_404(job_id)
    step = request.form.get("step", "")
    if job.kind != JobKind.SETUP or step not in set(SetupStep):
        abort(400, "only a step of a set-up can be retried")
    params = {k: v for k, v in job.params.items() if k != "as_upn"}
    return redirect(url_for("onboarding.job", job_id=_start(JobKind.SETUP, {**params, "only": [step]})))


# -- a job's page ------------------------------------------------------------------------------------------

def _paged(items: list, search: str) -> tuple[list, int, int]:
    found = [i for i in items if search.lower() in i.name.lower()]
    pages = max(1, -(-len(found) // PAGE_SIZE))
    number = min(max(1, request.args.get("page", 1, type=int)), pages)
    return found[(number - 1) * PAGE_SIZE:number * PAGE_SIZE], number, pages


# A job's result page is templates/job/<kind>.html, for each JobKind.


@bp.get("/console/jobs/<int:job_id>")
@signed_in
def job(job_id: int):
    found = _job_or_404(job_id)
    if found.kind not in set(JobKind):
        abort(404)
    common = {"kind": found.kind, "steps": found.steps, "state": found.state, "job_id": job_id, "admin": is_admin()}
    if found.state in ("queued", "running"):
        return page("working", "job.html", refresh=1, working=True,
                    who=found.params.get("as_upn") or "the configured identity", **common)
    if found.state == "failed" and found.error:
        return page("failed", "job.html", message=found.error, error=True, failed=True, **common)
    search = request.args.get("search", "").strip()
    try:
        result = _result_of(found.kind, found.result or {})
    except (KeyError, TypeError, ValueError):
        return page("failed", "job.html", message="This result was stored in a shape this version cannot read; "
                    "start the step again.", error=True, failed=True, **common)
    items, number, pages = _paged(result.get(found.kind, []), search) \
        if found.kind in (JobKind.PROJECTS, JobKind.REPOSITORIES) else ([], 1, 1)
    return page(found.kind, "job.html", p=found.params, r=result, items=items, search=search, number=number,
                pages=pages, **common)


def _result_of(kind: str, stored: dict) -> dict:
    """A job's stored result with its discovery answers read back into value types."""
    if kind == JobKind.PROJECTS:
        return {"projects": [catalog.project_from_json(p) for p in stored["projects"]]}
    if kind == JobKind.REPOSITORIES:
        return {"repositories": [catalog.offer_from_json(r) for r in stored["repositories"]]}
    if kind == JobKind.DBT:
        return {"accounts": [catalog.dbt_catalog_from_json(a) for a in stored["accounts"]]}
    return stored
