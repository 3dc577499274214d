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
from sqlalchemy.orm import joinedload

from .. import catalog
from ..contracts import JobKind, SetupStep
from ..domain import SERVICES_API_VERSION
from ..errors import ConfigError
from ..history import read
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
from .pages import admins_only, check_csrf, form_id, is_admin, page, person, signed_in, subject
from .services import services

bp = Blueprint("onboarding", __name__)

PAGE_SIZE = 25
REPOSITORIES_PAGE = 100


def _acting_person() -> dict | None:
    """Whose Azure DevOps token onboarding uses: the signed-in person's (Entra sign-in), or None (the local
    admin token: each organization's configured identity)."""
    found = person()
    return None if found is None else {"tid": found.tenant_id, "oid": found.object_id, "name": session.get("name", "")}


JOBS_KEPT = timedelta(days=7)
OPEN_JOBS_PER_PERSON = 5  # queued or running requests one person may have at a time


class TooManyJobs(Exception):
    pass


def _start(kind: JobKind, params: dict) -> int:
    me = subject()
    with services().db.session() as s:
        s.execute(delete(OnboardingJob).where(OnboardingJob.created_at < utcnow() - JOBS_KEPT))  # old pages go
        open_jobs = s.scalar(select(func.count()).select_from(OnboardingJob).where(
            OnboardingJob.requested_by == me, OnboardingJob.state.in_(("queued", "running"))))
        if open_jobs >= OPEN_JOBS_PER_PERSON:
            raise TooManyJobs
        job = OnboardingJob(kind=kind, requested_by=me, steps=[], result={},
                            params={**params, "as_person": _acting_person(), "by_name": session.get("name", "")})
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
        if job is None or not (is_admin() or job.requested_by == subject()):
            abort(404)
        s.expunge(job)
        return job


# -- linked repositories ----------------------------------------------------------------------------------

@bp.get("/console/repositories")
@signed_in
def repositories():
    """Admins see every repository the bridge serves; other people those of organizations their own healthy
    connection reaches. A page at a time (``?page=``), filtered by any part of ORGANIZATION/PROJECT/REPOSITORY."""
    search = request.args.get("q", "").strip()[:200]
    page_arg = request.args.get("page", "1")
    number = int(page_arg) if page_arg.isascii() and page_arg.isdigit() and 0 < len(page_arg) < 6 else 1
    number = max(number, 1)
    with services().db.session() as s:
        rows, query = [], select(Repository).options(joinedload(Repository.organization)).order_by(Repository.id)
        if (visible := read.Viewer(admin=is_admin(), person=person()).repositories(s)) is not None:
            query = query.where(visible)
        if search:
            like = f"%{read.escape_like(search.lower())}%"
            query = query.join(Organization).where(
                func.lower(Organization.name + "/" + Repository.ado_project_name + "/" + Repository.name).like(
                    like, escape="\\"))
        repos = list(s.scalars(query.offset((number - 1) * REPOSITORIES_PAGE).limit(REPOSITORIES_PAGE + 1)))
        more, repos = len(repos) > REPOSITORIES_PAGE, repos[:REPOSITORIES_PAGE]
        ids = [r.id for r in repos]  # each table read once, however many repositories there are
        hooks: dict[int, list[HookSubscriptionRecord]] = {}
        for hook in s.scalars(select(HookSubscriptionRecord).where(HookSubscriptionRecord.repository_id.in_(ids))):
            hooks.setdefault(hook.repository_id, []).append(hook)
        webhooks = {w.repository_id: w for w in s.scalars(
            select(DbtWebhookRecord).where(DbtWebhookRecord.repository_id.in_(ids)))}
        for repo in repos:
            mine, webhook = hooks.get(repo.id, []), webhooks.get(repo.id)
            problems = read.describe_problems([(h.event_type, h.problem) for h in mine if h.problem],
                                              webhook.problem if webhook is not None else None)
            rows.append({"id": repo.id, "name": read.full_name(repo),
                         "job": repo.ci_job_id, "context": f"{repo.status_genre}/{repo.status_name}",
                         "policy": repo.policy_id, "hooks": sum(1 for h in mine if h.status == "enabled"),
                         "hook_total": len(mine), "webhook": webhook.status if webhook else "—",
                         "problems": problems, "by": repo.set_up_by or "configuration file"})
    return page("repositories", "repositories.html", message=request.args.get("message", ""), rows=rows,
                admin=is_admin(), search=search, number=number, more=more)


@bp.route("/console/repositories/<id:repository_id>/unlink", methods=["GET", "POST"])
@admins_only
def unlink(repository_id: int):
    with services().db.session() as s:
        repo = s.get(Repository, repository_id)
        if repo is None:
            abort(404)
        name = f"{repo.organization.name}/{repo.ado_project_name}/{repo.name}"
    if request.method == "POST":
        check_csrf()
    if request.method == "GET" or request.form.get("confirmed") != "1":
        return page("unlink", "confirm.html", question=f"Unlink {name}?", verb="Unlink", policy_choice=True,
                    consequence="The bridge stops running CI for its pull requests and deletes its service hooks "
                                "and dbt Cloud webhook.", action=request.path, back=url_for("onboarding.repositories"))
    return _started(JobKind.UNLINK, {"repository_id": repository_id,
                                     "remove_policy": bool(request.form.get("remove_policy"))})


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
    account_id, token = form_id("account_id"), request.form.get("api_token", "").strip()
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
    # Checked by a worker before it is saved (the web tier never calls out); sealed while it waits.
    return _started(JobKind.DBT_ACCOUNT, {"dbt_account": account_id, "url": url, "token_enc": box.encrypt(token)})


# -- import: organization → project → repository → job → confirm -----------------------------------------

@bp.get("/console/import")
@signed_in
def choose_organization():
    me = person()
    with services().db.session() as s:
        if me:
            mine = s.scalars(select(Connection).where(Connection.of(me))).all()
            if not any(c.status == "ok" for c in mine):
                return page("import", "import/connect_first.html")
            organizations = sorted({o for c in mine if c.status == "ok" for o in (c.organizations or [])})
        else:
            organizations = sorted(s.scalars(select(Organization.name)).all())
        accounts = s.scalars(select(DbtAccount.id)).all()
        servers = sorted(s.scalars(select(Organization.name).where(Organization.api_version != SERVICES_API_VERSION)))
    if not accounts and is_admin():
        return page("import", "import/no_dbt_account.html")
    return page("import", "import/organization.html", organizations=organizations, servers=servers,
                who=session.get("name") if me else None, admin=is_admin())


@bp.post("/console/import/projects")
@signed_in
def find_projects():
    check_csrf()
    org = request.form.get("org", "").strip()
    if not org:
        return redirect(url_for("onboarding.choose_organization"))
    return _started(JobKind.PROJECTS, {"organization": org})


@bp.post("/console/import/repositories")
@signed_in
def find_repositories():
    check_csrf()
    org, project = request.form.get("org", "").strip(), request.form.get("project", "").strip()
    if not org or not project:
        return redirect(url_for("onboarding.choose_organization"))
    return _started(JobKind.REPOSITORIES, {"organization": org, "project": project,
                                           "project_name": request.form.get("project_name", "").strip()[:300]})


@bp.post("/console/import/dbt")
@admins_only
def choose_job():
    check_csrf()
    params = {k: request.form.get(a, "").strip() for k, a in (("organization", "org"), ("project", "project"),
                                                              ("repository", "repo"))}
    if not all(params.values()):
        return redirect(url_for("onboarding.choose_organization"))
    params["repository_name"] = request.form.get("name", "").strip()[:300]
    params["project_name"] = request.form.get("project_name", "").strip()[:300]
    return _started(JobKind.DBT, params)


def _started(kind: JobKind, params: dict):
    """Start a job and show its page; a person with too many requests in progress is asked to wait."""
    try:
        job_id = _start(kind, params)
    except TooManyJobs:
        return page("busy", message=f"You have {OPEN_JOBS_PER_PERSON} requests in progress; wait for them to "
                                    "finish, then try again.", error=True, status=429)
    return redirect(url_for("onboarding.job", job_id=job_id))


@bp.post("/console/import/setup")
@admins_only
def confirm_setup():
    check_csrf()
    form = request.form
    params = {"organization": form.get("organization", ""), "project": form.get("project", ""),
              "repository": form.get("repository", ""), "dbt_account": form_id("dbt_account"),
              "target_branch": form.get("target_branch", "main").strip() or "main",
              "policy": form.get("policy") == "1", "reset_on_new_changes": form.get("reset_on_new_changes") == "1",
              "drafts": "run" if form.get("drafts") == "run" else "skip", "teardown_job": form_id("teardown_job")}
    if form.get("job_choice") == "create":
        steps = [line.strip() for line in form.get("job_steps", "").splitlines() if line.strip()]
        if any(not step.startswith("dbt ") for step in steps):
            return page("import", message="Each job step is a dbt command (starting with 'dbt ').", error=True,
                        status=400)
        params.update(environment_id=form_id("environment_id"), defer_to=form_id("defer_to"),
                      job_name=form.get("job_name", "").strip() or None, job_steps=steps)
        missing = not params["environment_id"]
    else:
        params["ci_job"] = form_id("ci_job")
        missing = not params["ci_job"]
    if missing or not all(params[k] for k in ("organization", "project", "repository", "dbt_account")):
        return page("import", message="Choose a repository, a dbt Cloud account and a CI job (or an environment "
                                          "to create one in).", error=True, status=400)
    return _started(JobKind.SETUP, params)


@bp.post("/console/jobs/<id:job_id>/retry")
@admins_only
def retry(job_id: int):
    check_csrf()
    job = _job_or_404(job_id)
    step = request.form.get("step", "")
    if job.kind != JobKind.SETUP or step not in set(SetupStep):
        abort(400, "only a step of a set-up can be retried")
    params = {k: v for k, v in job.params.items() if k != "as_person"}
    return _started(JobKind.SETUP, {**params, "only": [step]})


# -- a job's page ------------------------------------------------------------------------------------------

def _paged(items: list, search: str) -> tuple[list, int, int]:
    found = [i for i in items if search.lower() in i.name.lower()]
    pages = max(1, -(-len(found) // PAGE_SIZE))
    number = min(max(1, request.args.get("page", 1, type=int)), pages)
    return found[(number - 1) * PAGE_SIZE:number * PAGE_SIZE], number, pages


# A job's result page is templates/job/<kind>.html, for each JobKind.


@bp.get("/console/jobs/<id:job_id>")
@signed_in
def job(job_id: int):
    found = _job_or_404(job_id)
    if found.kind not in set(JobKind):
        abort(404)
    common = {"kind": found.kind, "steps": found.steps, "state": found.state, "job_id": job_id, "admin": is_admin()}
    if found.state in ("queued", "running"):
        return page("working", "job.html", refresh=1, working=True,
                    who=(found.params.get("as_person") or {}).get("name") or "the configured identity", **common)
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
                pages=pages, linked=_linked_jobs(found.params.get("repository")) if found.kind == JobKind.DBT else {},
                **common)


def _linked_jobs(repository: str | None) -> dict[int, str]:
    """CI jobs that already serve another repository, with its name: not pre-selected, and marked."""
    with services().db.session() as s:
        return {r.ci_job_id: f"{r.organization.name}/{r.ado_project_name}/{r.name}"
                for r in s.scalars(select(Repository)) if r.ado_repository_id != (repository or "").lower()}


def _result_of(kind: str, stored: dict) -> dict:
    """A job's stored result with its discovery answers read back into value types."""
    if kind == JobKind.PROJECTS:
        return {"projects": [catalog.project_from_json(p) for p in stored["projects"]]}
    if kind == JobKind.REPOSITORIES:
        return {"repositories": [catalog.offer_from_json(r) for r in stored["repositories"]]}
    if kind == JobKind.DBT:
        return {"accounts": [catalog.dbt_catalog_from_json(a) for a in stored["accounts"]]}
    return stored
