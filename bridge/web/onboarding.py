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

from flask import Blueprint, abort, redirect, render_template_string, request, session, url_for
from sqlalchemy import delete, func, select

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
from .pages import admins_only, check_csrf, csrf_token, is_admin, page, signed_in
from .services import services

bp = Blueprint("onboarding", __name__)

PAGE_SIZE = 25
STEP_NAMES = ("repository", "permissions", "ci job", "link", "service hooks", "dbt webhook", "branch policy")


def _acting_upn() -> str | None:
    """Whose Azure DevOps token onboarding uses: the signed-in person's (Entra sign-in), or None (the local
    admin token: each organization's configured identity)."""
    return session["user"] if session.get("via") == "entra" else None


JOBS_KEPT = timedelta(days=7)


def _start(kind: str, params: dict) -> int:
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
    body = render_template_string("""
<h2>Repositories the bridge serves</h2>
<table><tr><th>repository</th><th>dbt job</th><th>status</th><th>service hooks</th><th>dbt webhook</th>
<th>needs a person</th><th>set up by</th><th></th></tr>
{% for r in rows %}<tr><td>{{ r.name }}</td><td>{{ r.job }}</td><td>{{ r.context }}{% if r.policy %}
(required by policy {{ r.policy }}){% endif %}</td>
<td class="{{ 'ok' if r.hooks == r.hook_total and r.hook_total else 'warn' }}">{{ r.hooks }} of {{ r.hook_total }}
enabled</td><td>{{ r.webhook }}</td><td class="bad">{{ r.problems | join("; ") }}</td><td>{{ r.by }}</td>
<td>{% if admin %}<form method="post" action="/console/repositories/{{ r.id }}/unlink">
<input type="hidden" name="csrf" value="{{ csrf }}"><label><input type="checkbox" name="remove_policy" value="1">
and its branch policy</label><button>Unlink</button></form>{% endif %}</td></tr>
{% else %}<tr><td colspan="8">None yet. <a href="/console/import">Import a repository</a>.</td></tr>{% endfor %}
</table>""", rows=rows, admin=is_admin(), csrf=csrf_token())
    return page("repositories", body, message=request.args.get("message", ""))


@bp.post("/console/repositories/<int:repository_id>/unlink")
@admins_only
def unlink(repository_id: int):
    check_csrf()
    with services().db.session() as s:
        if s.get(Repository, repository_id) is None:
            abort(404)
    job_id = _start("unlink", {"repository_id": repository_id,
                               "remove_policy": bool(request.form.get("remove_policy"))})
    return redirect(url_for("onboarding.job", job_id=job_id))


# -- dbt Cloud accounts ------------------------------------------------------------------------------------

@bp.get("/console/dbt-accounts")
@admins_only
def dbt_accounts():
    with services().db.session() as s:
        accounts = [{"id": a.id, "url": a.url, "token": bool(a.api_token_enc), "secret": bool(a.webhook_secret_enc)}
                    for a in s.scalars(select(DbtAccount).order_by(DbtAccount.id))]
    body = render_template_string("""
<h2>dbt Cloud accounts</h2>
<table><tr><th>account</th><th>access URL</th><th>service token</th><th>account webhook secret</th></tr>
{% for a in accounts %}<tr><td>{{ a.id }}</td><td>{{ a.url }}</td><td>{{ 'stored' if a.token else 'missing' }}</td>
<td>{{ 'stored' if a.secret else '— (the bridge registers its own webhooks)' }}</td></tr>
{% else %}<tr><td colspan="4">None yet.</td></tr>{% endfor %}</table>
<h3>Add or update an account</h3>
<form method="post" action="/console/dbt-accounts"><input type="hidden" name="csrf" value="{{ csrf }}">
<label>Account id <input name="account_id" inputmode="numeric" required></label>
<label>Access URL <input name="url" value="https://cloud.getdbt.com" size="50" required></label>
<label>Service token (Job Admin and Webhooks permissions) <input name="api_token" type="password"
autocomplete="off" required></label>
<button>Save and check</button></form>
<p>Secrets are stored encrypted and never shown again.</p>""", accounts=accounts, csrf=csrf_token())
    return page("dbt Cloud accounts", body)


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
        return page("dbt Cloud accounts", "", message=str(exc), error=True, status=400)
    if not account_id or not token:
        return page("dbt Cloud accounts", "", message="Give the account id and a service token.", error=True,
                    status=400)
    if box is None:
        return page("dbt Cloud accounts", "", message="BRIDGE_SECRET_KEY is not set: secrets cannot be stored.",
                    error=True, status=503)
    with services().db.session() as s:
        account = s.get(DbtAccount, account_id)
        if account is None:
            account = DbtAccount(id=account_id, url=url)
            s.add(account)
        account.url, account.api_token_enc = url, box.encrypt(token)
    return redirect(url_for("onboarding.job", job_id=_start("dbt-account", {"dbt_account": account_id})))


# -- import: organization → project → repository → job → confirm -----------------------------------------

@bp.get("/console/import")
@signed_in
def choose_organization():
    upn = _acting_upn()
    with services().db.session() as s:
        if upn:
            mine = s.scalars(select(Connection).where(func.lower(Connection.upn) == upn)).all()
            if not any(c.status == "ok" for c in mine):
                return page("import", '<p>To import, the bridge acts with <em>your</em> Azure DevOps permissions: '
                                      '<a href="/login/azure-active-directory">connect your Azure DevOps account</a> '
                                      'first.</p>')
            organizations = sorted({o for c in mine if c.status == "ok" for o in (c.organizations or [])})
        else:
            organizations = sorted(s.scalars(select(Organization.name)).all())
        accounts = s.scalars(select(DbtAccount.id)).all()
    if not accounts and is_admin():
        return page("import", '<p>No dbt Cloud account is configured yet: <a href="/console/dbt-accounts">add '
                              'one</a> (or under <code>dbt_cloud.accounts</code> in the configuration file).</p>')
    body = render_template_string("""
<h2>{{ 'Import a repository' if admin else 'Your repositories' }} — 1. organization</h2>
{% if organizations %}<form method="get" action="/console/import/projects"><label>Azure DevOps organization
<select name="org">{% for o in organizations %}<option>{{ o }}</option>{% endfor %}</select></label>
<button>Show projects</button></form>
{% elif who %}<p>{{ who }} reaches no Azure DevOps organization yet (the bridge reads them a few seconds after you
connect; reload this page).</p>{% else %}<p>No organization is configured, and the local admin token acts as an
organization's configured identity: sign in with Microsoft and connect your Azure DevOps account to import with
your own permissions.</p>{% endif %}
{% if not admin %}<p>You can look around with your own Azure DevOps permissions; setting up CI is for bridge
admins.</p>{% endif %}""", organizations=organizations, who=upn, admin=is_admin())
    return page("import", body)


@bp.get("/console/import/projects")
@signed_in
def find_projects():
    org = request.args.get("org", "").strip()
    if not org:
        return redirect(url_for("onboarding.choose_organization"))
    return redirect(url_for("onboarding.job", job_id=_start("projects", {"organization": org})))


@bp.get("/console/import/repositories")
@signed_in
def find_repositories():
    org, project = request.args.get("org", "").strip(), request.args.get("project", "").strip()
    if not org or not project:
        return redirect(url_for("onboarding.choose_organization"))
    return redirect(url_for("onboarding.job", job_id=_start("repositories", {"organization": org,
                                                                             "project": project})))


@bp.get("/console/import/setup")
@admins_only
def choose_job():
    params = {k: request.args.get(a, "").strip() for k, a in (("organization", "org"), ("project", "project"),
                                                              ("repository", "repo"))}
    if not all(params.values()):
        return redirect(url_for("onboarding.choose_organization"))
    params["repository_name"] = request.args.get("name", "").strip()[:300]
    return redirect(url_for("onboarding.job", job_id=_start("dbt", params)))


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
            return page("import", "", message="Each job step is a dbt command (starting with 'dbt ').", error=True,
                        status=400)
        params.update(environment_id=_int("environment_id"), defer_to=_int("defer_to"),
                      job_name=form.get("job_name", "").strip() or None, job_steps=steps)
        missing = not params["environment_id"]
    else:
        params["ci_job"] = _int("ci_job")
        missing = not params["ci_job"]
    if missing or not all(params[k] for k in ("organization", "project", "repository", "dbt_account")):
        return page("import", "", message="Choose a repository, a dbt Cloud account and a CI job (or an environment "
                                          "to create one in).", error=True, status=400)
    return redirect(url_for("onboarding.job", job_id=_start("setup", params)))


@bp.post("/console/jobs/<int:job_id>/retry")
@admins_only
def retry(job_id: int):
    check_csrf()
    job = _job_or_404(job_id)
    step = request.form.get("step", "")
    if job.kind != "setup" or step not in STEP_NAMES:
        abort(400, "only a step of a set-up can be retried")
    params = {k: v for k, v in job.params.items() if k != "as_upn"}
    return redirect(url_for("onboarding.job", job_id=_start("setup", {**params, "only": [step]})))


# -- a job's page ------------------------------------------------------------------------------------------

def _paged(items: list, search: str) -> tuple[list, int, int]:
    found = [i for i in items if search.lower() in i["name"].lower()]
    pages = max(1, -(-len(found) // PAGE_SIZE))
    number = min(max(1, request.args.get("page", 1, type=int)), pages)
    return found[(number - 1) * PAGE_SIZE:number * PAGE_SIZE], number, pages


RESULT = {
    "projects": """
<h2>Import a repository — 2. project in {{ p.organization }}</h2>
<form method="get"><label>Search <input name="search" value="{{ search }}"></label><button>Filter</button></form>
<ul>{% for item in items %}<li><a href="/console/import/repositories?org={{ p.organization | urlencode }}&project=
{{- item.id }}">{{ item.name }}</a></li>{% else %}<li>No project{{ ' matches' if search }}.</li>{% endfor %}</ul>""",
    "repositories": """
<h2>Import a repository — 3. repository in {{ p.organization }}/{{ p.project }}</h2>
<form method="get"><label>Search <input name="search" value="{{ search }}"></label><button>Filter</button></form>
<table>{% for item in items %}<tr><td>{{ item.name }}</td><td>{% if item.is_disabled %}disabled{% elif admin %}
<a href="/console/import/setup?org={{ p.organization | urlencode }}&project={{ item.project_id
}}&repo={{ item.id }}&name={{ item.name | urlencode }}">
{{ 'Repair set-up' if item.linked else 'Set up CI' }}</a>{% endif %}</td>
<td>{{ 'linked to job %s' % item.ci_job if item.linked else '' }}</td></tr>
{% else %}<tr><td>No repository{{ ' matches' if search }}.</td></tr>{% endfor %}</table>""",
    "dbt": """
<h2>Import a repository — 4. dbt Cloud job for {{ p.repository_name or p.repository }}</h2>
<form method="post" action="/console/import/setup"><input type="hidden" name="csrf" value="{{ csrf }}">
{% for k in ("organization", "project", "repository") %}<input type="hidden" name="{{ k }}" value="{{ p[k] }}">
{% endfor %}
{% for account in r.accounts %}
<fieldset><legend>dbt Cloud account {{ account.id }}</legend>
<label><input type="radio" name="dbt_account" value="{{ account.id }}" {{ 'checked' if loop.first }}>
use this account</label>
<label><input type="radio" name="job_choice" value="existing" checked> an existing CI job
<select name="ci_job">{% for job in account.jobs %}<option value="{{ job.id }}" {{ 'selected' if job.job_type == 'ci'
}}>{{ job.id }} {{ job.name }} ({{ job.job_type }})</option>{% endfor %}</select></label>
<label><input type="radio" name="job_choice" value="create"> create a CI job in
<select name="environment_id">{% for e in account.environments %}<option value="{{ e.id }}" {{ 'selected' if
e.deployment_type == 'staging' }}>{{ e.name }} ({{ e.project }})</option>{% endfor %}</select>, deferring to
<select name="defer_to"><option value="">nothing</option>{% for e in account.environments %}<option value="{{ e.id }}"
{{ 'selected' if e.deployment_type == 'production' }}>{{ e.name }}</option>{% endfor %}</select>, named
<input name="job_name" value="PR CI (ado-dbt bridge)"></label>
<label>running (one dbt command a line)<br>
<textarea name="job_steps" rows="3" cols="60">dbt build --select state:modified+</textarea></label>
<label>Teardown job (drops the PR schema when the PR closes) <select name="teardown_job"><option value="">none
</option>{% for job in account.jobs %}<option value="{{ job.id }}">{{ job.id }} {{ job.name }}</option>{% endfor %}
</select></label></fieldset>
{% else %}<p class="bad">No dbt Cloud account answered.</p>{% endfor %}
<fieldset><legend>Pull requests</legend>
<label>Build PRs into <input name="target_branch" value="main"></label>
<label><input type="checkbox" name="policy" value="1" checked> require a green dbt run before a PR can complete
(Status branch policy)</label>
<label><input type="checkbox" name="reset_on_new_changes" value="1" checked> reset the status on new changes</label>
<label>Drafts <select name="drafts"><option value="skip">skip until published</option><option value="run">build
</option></select></label></fieldset>
<button>Set up CI</button></form>""",
    "setup": """
<h2>Set-up of {{ p.organization }}/{{ p.project }}/{{ p.repository }}{% if r.outcome %}: {{ r.outcome }}{% endif %}
</h2>""",
    "unlink": """<h2>Unlink repository {{ p.repository_id }}</h2>""",
    "dbt-account": """<h2>dbt Cloud account {{ p.dbt_account }}</h2>
<p class="ok">dbt Cloud answered: {{ r.jobs }} jobs and {{ r.environments }} environments. <a href="/console/import">
Import a repository</a>.</p>""",
}

STEPS_TABLE = """
{% if steps %}<table><tr><th>step</th><th>result</th><th>detail</th><th></th></tr>
{% for s in steps %}<tr><td>{{ s.step }}</td>
<td class="{{ 'bad' if s.outcome in ('failed', 'refused') else 'ok' }}">{{ s.outcome }}</td><td>{{ s.detail }}</td>
<td>{% if s.outcome in ('failed', 'refused') and kind == 'setup' and admin %}
<form method="post" action="/console/jobs/{{ job_id }}/retry"><input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="step" value="{{ s.step }}"><button>Retry this step</button></form>{% endif %}</td></tr>
{% endfor %}</table>{% endif %}
{% if kind in ('setup', 'unlink') and state in ('done', 'failed') %}
<p><a href="/console/repositories">All repositories</a></p>{% endif %}"""


@bp.get("/console/jobs/<int:job_id>")
@signed_in
def job(job_id: int):
    found = _job_or_404(job_id)
    if found.state in ("queued", "running"):
        body = render_template_string("<p>Working… (asking Azure DevOps and dbt Cloud as {{ who }})</p>",
                                      who=found.params.get("as_upn") or "the configured identity")
        return page("working", body + render_template_string(STEPS_TABLE, steps=found.steps, kind=found.kind,
                                                             state=found.state, job_id=job_id, admin=is_admin(),
                                                             csrf=csrf_token()), refresh=1)
    if found.state == "failed" and found.error:
        return page("failed", '<p><a href="/console/import">Start again</a></p>', message=found.error, error=True)
    search = request.args.get("search", "").strip()
    items, number, pages = _paged(found.result.get(found.kind, []), search) \
        if found.kind in ("projects", "repositories") else ([], 1, 1)
    body = render_template_string(RESULT[found.kind], p=found.params, r=found.result, items=items, search=search,
                                  csrf=csrf_token(), admin=is_admin())
    if pages > 1:
        body += render_template_string(
            '<p>Page {{ n }} of {{ pages }}: {% if n > 1 %}<a href="?page={{ n - 1 }}&search={{ s | urlencode }}">'
            'previous</a>{% endif %} {% if n < pages %}<a href="?page={{ n + 1 }}&search={{ s | urlencode }}">next'
            '</a>{% endif %}</p>', n=number, pages=pages, s=search)
    body += render_template_string(STEPS_TABLE, steps=found.steps, kind=found.kind, state=found.state, job_id=job_id,
                                   admin=is_admin(), csrf=csrf_token())
    return page(found.kind, body)
