"""Setting a repository's CI up (or repairing it), step by step: the repository, permissions, the dbt Cloud CI
job, the link, service hooks, the dbt webhook and the branch policy. Each step reports what it found and did;
a failing step stops the steps after it, and one optional step can be retried alone (``SetupRequest.only``).
Every step is idempotent: run again, it repairs what drifted and duplicates nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select

from ..catalog import AdoRepository, DbtJob
from ..clients.azure_devops import (
    EDIT_POLICIES,
    EDIT_SUBSCRIPTIONS,
    GIT_REPOSITORIES_NAMESPACE,
    SERVICE_HOOKS_NAMESPACE,
    AzureDevOpsClient,
)
from ..config_file import link_repository
from ..contracts import SetupStep
from ..domain import (
    CiJobSpec,
    StatusContext,
    StatusPolicy,
    normalize_ref,
)
from ..errors import BridgeError, LockBusy, NotFound
from ..models import Organization, Repository
from . import discovery
from .context import Actor, OnboardingContext, problem_of
from .dbt_webhooks import ensure_dbt_webhook
from .report import SetupReport, Step, StepFailed
from .service_hooks import ensure_hooks

log = logging.getLogger(__name__)

STEPS = tuple(SetupStep)
# Retrying one step still runs the first four (they find the repository and job, and change nothing that is
# already right); of these three only the ones asked for run.
OPTIONAL_STEPS = (SetupStep.SERVICE_HOOKS, SetupStep.DBT_WEBHOOK, SetupStep.BRANCH_POLICY)


@dataclass(frozen=True)
class NewJob:
    """A dbt Cloud CI job to create when the repository has none yet."""

    environment_id: int
    deferring_environment_id: int | None
    name: str = "PR CI (ado-dbt bridge)"
    steps: tuple[str, ...] = ("dbt build --select state:modified+",)
    project_id: int | None = None


@dataclass(frozen=True)
class SetupRequest:
    organization: str
    project: str
    repository: str
    dbt_account: int
    ci_job: int | None = None
    new_job: NewJob | None = None
    teardown_job: int | None = None
    target_branch: str = "main"
    policy: bool = False
    reset_on_new_changes: bool = True
    drafts: str = "skip"
    status_genre: str = "dbt-cloud"
    status_name: str = "ci"
    only: tuple[str, ...] = ()   # retry only these steps (see OPTIONAL_STEPS)


def setup(ctx: OnboardingContext, request: SetupRequest, actor: Actor) -> SetupReport:
    """Set up (or repair) CI for one repository."""
    report = SetupRun(ctx, request, actor).run()
    log.info("set-up of %s by %s: %s", report.repository, actor.name, report.outcome)
    return report


def set_policy(ctx: OnboardingContext, repository_id: int, policy_id: int) -> None:
    with ctx.db.session() as s:
        s.get(Repository, repository_id).policy_id = policy_id


class SetupRun:
    """One set-up of one repository: the steps in order, each reporting what it found and did."""

    def __init__(self, ctx: OnboardingContext, request: SetupRequest, actor: Actor):
        self.ctx, self.request, self.actor = ctx, request, actor
        self.report = SetupReport(f"{request.organization}/{request.project}/{request.repository}")
        self.context = StatusContext(request.status_genre, request.status_name)
        self.ado: AzureDevOpsClient | None = None
        self.repo: AdoRepository | None = None
        self.job: DbtJob | None = None
        self.repository_id = self.organization_id = 0

    def run(self) -> SetupReport:
        steps = (self.repository, self.permissions, self.ci_job, self.link, self.hooks, self.dbt_webhook,
                 self.policy)
        for name, action in zip(STEPS, steps, strict=True):
            self._step(name, action)
        return self.report

    def _step(self, name: str, action: Callable[[], Step]) -> None:
        report, only = self.report, self.request.only
        if report.failed_steps or (report.steps and report.steps[0].outcome == "skipped"):
            reason = f"after {report.failed_steps[0]} failed" if report.failed_steps else "nothing to set up"
            report.steps.append(Step(name, "skipped", reason))
            return
        if only and name in OPTIONAL_STEPS and name not in only:
            report.steps.append(Step(name, "skipped", "not retried this time"))
            return
        try:
            report.steps.append(action())
        except StepFailed as exc:
            report.steps.append(Step(name, exc.outcome, exc.detail))
        except BridgeError as exc:
            report.steps.append(Step(name, "failed", problem_of(exc)))
        except LockBusy as exc:
            report.steps.append(Step(name, "failed", f"another set-up or health check is changing these "
                                                     f"subscriptions ({exc}); retry in a moment"))

    def repository(self) -> Step:
        request = self.request
        self.ado = self.ctx.azure_devops(self.actor, request.organization)
        try:
            info = self.ado.get_repository(request.project, request.repository)
        except NotFound:
            raise StepFailed("failed", f"{self.actor.name} cannot see repository {request.repository} in project "
                                       f"{request.project} (it does not exist, or they lack Read access)") from None
        if info.is_disabled:
            raise StepFailed("skipped", f"repository {info.name} is disabled in Azure DevOps")
        self.repo = info
        return Step("repository", "unchanged", f"{info.project_name}/{info.name} ({info.id})")

    def permissions(self) -> Step:
        repo = self.repo
        checks = [(SERVICE_HOOKS_NAMESPACE, f"PublisherSecurity/{repo.project_id}", EDIT_SUBSCRIPTIONS)]
        names = ["Edit subscriptions (Service hooks) on the project"]
        if self.request.policy:
            checks.append((GIT_REPOSITORIES_NAMESPACE, f"repoV2/{repo.project_id}/{repo.id}", EDIT_POLICIES))
            names.append("Edit policies on the repository")
        granted = self.ado.has_permissions(checks)
        missing = [n for n, ok in zip(names, granted, strict=False) if not ok]
        if missing:
            raise StepFailed("refused", f"{self.actor.name} lacks {' and '.join(missing)} in "
                                        f"{self.request.organization}/{repo.project_name}. A Project "
                                        "Administrator can grant it (Project settings → Permissions, or "
                                        "Repos → Security for policies), or can run this set-up instead.")
        return Step("permissions", "unchanged", "; ".join(names) + ": granted")

    def ci_job(self) -> Step:
        request = self.request
        dbt = self.ctx.dbt(request.dbt_account)
        if request.ci_job:
            self.job = dbt.get_job(request.ci_job)
            warning = _job_warning(self.job)
            return Step("ci job", "linked", f"job {self.job.id} {self.job.name!r}"
                                            + (f" ({warning})" if warning else ""))
        spec = request.new_job
        if spec is None:
            raise StepFailed("failed", "choose an existing dbt Cloud CI job or ask for one to be created")
        existing = [j for j in dbt.list_jobs(project_id=spec.project_id)
                    if j.name == spec.name and j.environment_id == spec.environment_id]
        if existing:  # set-up ran before: the job it created is reused, not duplicated
            self.job = existing[0]
            return Step("ci job", "unchanged", f"job {self.job.id} {spec.name!r} exists")
        if request.only and "ci job" not in request.only:
            raise StepFailed("failed", "no CI job yet; retry the 'ci job' step")
        environments = discovery.dbt_environments(self.ctx, request.dbt_account)
        project_id = spec.project_id or next((e.project_id for e in environments
                                              if e.id == spec.environment_id), None)
        if project_id is None:
            raise StepFailed("failed", f"dbt Cloud environment {spec.environment_id} was not found")
        self.job = dbt.create_job(CiJobSpec(
            account_id=request.dbt_account, project_id=project_id, environment_id=spec.environment_id,
            name=spec.name, deferring_environment_id=spec.deferring_environment_id, steps=spec.steps))
        return Step("ci job", "created", f"job {self.job.id} {spec.name!r}: {'; '.join(spec.steps)}")

    def link(self) -> Step:
        request, repo, job, context, actor = self.request, self.repo, self.job, self.context, self.actor
        with self.ctx.db.session() as s:
            org = s.scalar(select(Organization).where(func.lower(Organization.name) == request.organization.lower()))
            created_org = org is None
            if created_org:
                org = Organization(name=request.organization, url=self.ado.base_url,
                                   identity_kind="user" if actor.person else "pat",
                                   identity_tid=actor.person.tenant_id if actor.person else None,
                                   identity_oid=actor.person.object_id if actor.person else None)
                s.add(org)
                s.flush()
            row, created, changed = link_repository(s, org.id, repo, {
                "dbt_account_id": request.dbt_account, "ci_job_id": job.id,
                "teardown_job_id": request.teardown_job,
                "target_branches": [normalize_ref(request.target_branch)] if request.target_branch else [],
                "drafts": request.drafts, "status_genre": context.genre, "status_name": context.name})
            row.set_up_by = actor.name
            s.flush()
            self.repository_id = self.report.repository_id = row.id
            self.organization_id = org.id
        note = f" (organization {request.organization} added; workers act as {actor.name})" if created_org else ""
        if created:
            return Step("link", "created", f"linked to dbt Cloud account {request.dbt_account}, job {job.id}, "
                                           f"status {context.genre}/{context.name}{note}")
        return Step("link", "repaired" if changed else "unchanged",
                    f"updated {', '.join(d.key for d in changed)}" if changed else "already linked")

    def hooks(self) -> Step:
        with self.ctx.lock(f"hooks:{self.organization_id}"):
            outcomes = ensure_hooks(self.ctx, self.ado, self.repository_id, self.organization_id, self.repo,
                                            by_admin=True)
        skipped = [f"{e}: {why}" for kind, e, why in outcomes if kind == "skipped"]
        outcomes = [o for o in outcomes if o[0] != "skipped"]
        created = sum(1 for o in outcomes if o[0] == "created")
        repaired = [f"{e}: {why}" for kind, e, why in outcomes if kind == "repaired"]
        outcome = "created" if created == len(outcomes) else "repaired" if created or repaired else "unchanged"
        detail = f"{len(outcomes)} subscriptions ({', '.join(e for _, e, _ in outcomes)})"
        if repaired:
            detail += "; repaired " + "; ".join(repaired)
        if skipped:
            detail += "; not subscribed: " + "; ".join(skipped)
        return Step("service hooks", outcome, detail)

    def dbt_webhook(self) -> Step:
        request = self.request
        jobs = tuple(j for j in (self.job.id, request.teardown_job) if j)
        kind, why = ensure_dbt_webhook(self.ctx, self.ctx.dbt(request.dbt_account), self.repository_id,
                                               request.dbt_account, jobs)
        return Step("dbt webhook", kind, why)

    def policy(self) -> Step:
        request, repo, context = self.request, self.repo, self.context
        if not request.policy:
            return Step("branch policy", "skipped", "not asked for (the PR can complete without a dbt run)")
        policy = StatusPolicy(repo.id, request.target_branch, context,
                              reset_on_new_changes=request.reset_on_new_changes)
        existing = self.ado.find_status_policy(repo.project_id, policy)
        if existing is not None:
            set_policy(self.ctx, self.repository_id, existing)
            return Step("branch policy", "unchanged", f"policy {existing} requires {context.genre}/{context.name}")
        policy_id = self.ado.create_status_policy(repo.project_id, policy)
        set_policy(self.ctx, self.repository_id, policy_id)
        reset = ", reset on new changes" if request.reset_on_new_changes else ""
        return Step("branch policy", "created", f"policy {policy_id}: {normalize_ref(request.target_branch)} "
                                               f"requires {context.genre}/{context.name} to succeed{reset}")


def _job_warning(job: DbtJob) -> str:
    if job.runs_on_git_events:
        return "warning: the job also runs on dbt Cloud's own Git trigger, so PRs would run twice; turn it off"
    if job.job_type not in (None, "ci"):
        return f"note: job type is {job.job_type}, not ci"
    return ""
