"""Onboarding: find repositories, set up their CI (dbt job, service hooks, dbt webhook, branch policy), undo it,
keep the subscriptions healthy, rotate their credentials.

Everything a person asks for acts with that person's Azure DevOps identity (``Actor``), so Azure DevOps
enforces their permissions; the periodic health check acts as each organization's configured identity. Every
operation is idempotent: run again, it repairs what drifted and duplicates nothing. The decisions (what a
subscription's state calls for) are pure rules in ``domain``; this module carries them out.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import re
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, func, select, update

from ..clients.azure_devops import (
    EDIT_POLICIES,
    EDIT_SUBSCRIPTIONS,
    GIT_REPOSITORIES_NAMESPACE,
    SERVICE_HOOKS_NAMESPACE,
    AzureDevOpsClient,
)
from ..clients.dbt_cloud import DbtCloudClient
from ..config_file import link_repository
from ..contracts import (
    AZURE_DEVOPS_WEBHOOK_PATH,
    DBT_CLOUD_WEBHOOK_PATH,
    STEP_FAILURES,
    SetupStep,
    StepOutcome,
)
from ..crypto import SecretBox
from ..db import Database
from ..domain import (
    DBT_WEBHOOK_EVENTS,
    HOOK_EVENTS,
    DbtWebhook,
    HookStatus,
    HookSubscription,
    Repair,
    StatusContext,
    ci_job_definition,
    dbt_webhook_verdict,
    hook_verdict,
    normalize_ref,
    status_policy_settings,
)
from ..errors import ApiError, BridgeError, LockBusy, NotFound
from ..models import (
    CiRun,
    Connection,
    DbtAccount,
    DbtWebhookRecord,
    Delivery,
    HookSubscriptionRecord,
    Organization,
    PullRequestRecord,
    Repository,
    utcnow,
)
from ..settings import Settings
from .connections import Connections

log = logging.getLogger(__name__)

HOOK_PATH = AZURE_DEVOPS_WEBHOOK_PATH
DBT_HOOK_PATH = DBT_CLOUD_WEBHOOK_PATH
STEPS = tuple(SetupStep)
# Retrying one step still runs the first four (they find the repository and job, and change nothing that is
# already right); of these three only the ones asked for run.
OPTIONAL_STEPS = (SetupStep.SERVICE_HOOKS, SetupStep.DBT_WEBHOOK, SetupStep.BRANCH_POLICY)


# Azure DevOps organization names: letters, digits and hyphens, not starting or ending with a hyphen.
ORGANIZATION_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?")


class OnboardingError(BridgeError):
    """A request onboarding cannot carry out; the message says what to change."""


@dataclass(frozen=True)
class Actor:
    """Who onboarding acts as: a connected person (``upn``) or, with ``upn`` None, each organization's
    configured identity. ``name`` is what records and messages call them."""

    name: str
    upn: str | None = None

    @classmethod
    def of(cls, upn: str | None, otherwise: str = "the organization's configured identity") -> Actor:
        """A connected person by sign-in name, or (``upn`` None) each organization's configured identity."""
        return cls(upn, upn) if upn else cls(otherwise)


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


@dataclass
class Step:
    step: str
    outcome: StepOutcome
    detail: str = ""

    def as_dict(self) -> dict:
        return {"step": self.step, "outcome": self.outcome, "detail": self.detail}


@dataclass
class SetupReport:
    repository: str
    steps: list[Step] = field(default_factory=list)
    repository_id: int | None = None

    @property
    def outcome(self) -> str:
        outcomes = {s.outcome for s in self.steps}
        if self.steps and self.steps[0].outcome == "skipped":
            return "skipped"
        if outcomes & STEP_FAILURES:
            return "failed"
        if "created" in outcomes and any(s.step == "link" and s.outcome == "created" for s in self.steps):
            return "created"
        if outcomes & {"created", "repaired"}:
            return "repaired"
        return "unchanged"

    @property
    def failed_steps(self) -> list[str]:
        return [s.step for s in self.steps if s.outcome in STEP_FAILURES]


class StepFailed(Exception):
    def __init__(self, outcome: str, detail: str):
        super().__init__(detail)
        self.outcome, self.detail = outcome, detail


def _problem(exc: Exception) -> str:
    return str(exc)[:500]


class Onboarding:
    def __init__(self, settings: Settings, db: Database, box: SecretBox, connections: Connections,
                 lock: Callable[[str], AbstractContextManager] | None = None):
        self.settings = settings
        self.db = db
        self.box = box
        self.connections = connections
        # One healer at a time per organization (set-up, beat, the CLI): two would both re-create a subscription.
        self.lock = lock or (lambda _key: nullcontext())

    # -- who acts where --------------------------------------------------------------------------------------

    def _organization(self, name: str) -> Organization | None:
        with self.db.session() as s:
            org = s.scalar(select(Organization).where(func.lower(Organization.name) == name.lower()))
            if org is not None:
                s.expunge(org)
            return org

    def _org_url(self, name: str, org: Organization | None = None) -> str:
        if org is not None:
            return org.url
        if not ORGANIZATION_NAME.fullmatch(name):
            raise OnboardingError(f"{name!r} is not an Azure DevOps organization name (letters, digits and hyphens)")
        return f"{self.settings.azure_devops_url}/{name}"

    def azure_devops(self, actor: Actor, organization: str) -> AzureDevOpsClient:
        """A client for ``organization`` acting as ``actor`` (one read of the organization's row)."""
        org = self._organization(organization)
        url = self._org_url(organization, org)  # a name that is no name is refused before anything else
        if actor.upn:
            credentials = self.connections.connected_user(actor.upn, organization=organization)
        elif org is None:
            raise OnboardingError(f"organization {organization!r} is not configured yet: act as a connected "
                                  "person (--as UPN, or from the console) to set up its first repository")
        else:
            credentials = self.connections.credentials_for(org)
        return self.connections.azure_devops_at(url, credentials, what=f"organization {organization}")

    def _dbt(self, account_id: int) -> DbtCloudClient:
        with self.db.session() as s:
            account = s.get(DbtAccount, account_id)
            if account is None:
                known = ", ".join(str(a) for a in s.scalars(select(DbtAccount.id))) or "none"
                raise OnboardingError(f"dbt Cloud account {account_id} is not configured (configured: {known}); "
                                      "add it in the console (dbt Cloud accounts), with `bridge dbt add-account`, "
                                      "or under dbt_cloud.accounts in the configuration file")
            s.expunge(account)
        return self.connections.dbt_cloud(account)

    # -- discovery ------------------------------------------------------------------------------------------

    def organizations(self, actor: Actor) -> list[str]:
        """What the actor reaches: a person's organizations (from their connection's profile), else the
        organizations configured here."""
        with self.db.session() as s:
            if actor.upn:
                rows = s.scalars(select(Connection).where(func.lower(Connection.upn) == actor.upn.lower())).all()
                return sorted({o for c in rows if c.status == "ok" for o in (c.organizations or [])})
            return sorted(s.scalars(select(Organization.name)).all())

    def projects(self, actor: Actor, organization: str, *, search: str = "") -> list[dict]:
        client = self.azure_devops(actor, organization)
        found = [p for p in client.list_projects() if _matches(p["name"], search)]
        return sorted(found, key=lambda p: p["name"].lower())

    def repositories(self, actor: Actor, organization: str, project: str, *, search: str = "") -> list[dict]:
        """Repositories of a project the actor can see, with whether (and how) the bridge serves each."""
        client = self.azure_devops(actor, organization)
        repos = [r for r in client.list_repositories(project) if _matches(r["name"], search)]
        with self.db.session() as s:
            linked = {r.ado_repository_id: r for r in s.scalars(select(Repository).join(Organization).where(
                func.lower(Organization.name) == organization.lower()))}
            return [{**r, "linked": r["id"] in linked,
                     "ci_job": linked[r["id"]].ci_job_id if r["id"] in linked else None} for r in repos]

    def dbt_jobs(self, account_id: int) -> list[dict]:
        return self._dbt(account_id).list_jobs()

    def dbt_environments(self, account_id: int) -> list[dict]:
        dbt = self._dbt(account_id)
        return [{**e, "project_id": p["id"], "project": p["name"]} for p in dbt.list_projects()
                for e in dbt.list_environments(p["id"])]

    # -- set-up ---------------------------------------------------------------------------------------------

    def setup(self, request: SetupRequest, actor: Actor) -> SetupReport:
        """Set up (or repair) CI for one repository. Each step is reported; a failing step stops the steps
        that depend on it, and can be retried alone with ``request.only``."""
        report = _SetupRun(self, request, actor).run()
        log.info("set-up of %s by %s: %s", report.repository, actor.name, report.outcome)
        return report

    def _set_policy(self, repository_id: int, policy_id: int) -> None:
        with self.db.session() as s:
            s.get(Repository, repository_id).policy_id = policy_id

    def webhook_url(self) -> str:
        return f"{self.settings.public_url}{HOOK_PATH}"

    def _new_hook_record(self, s, repository_id: int, organization_id: int, event_type: str) -> HookSubscriptionRecord:
        record = HookSubscriptionRecord(repository_id=repository_id, organization_id=organization_id,
                                        event_type=event_type, username=f"bridge-{secrets.token_hex(8)}",
                                        password_enc=self.box.encrypt(secrets.token_urlsafe(32)))
        s.add(record)
        s.flush()
        return record

    def _ensure_hooks(self, ado: AzureDevOpsClient, repository_id: int, organization_id: int, repo: dict, *,
                      by_admin: bool) -> list[tuple[str, str, str]]:
        """Make the repository's subscriptions exist, enabled, at the bridge's URL: [(outcome, event, why)]."""
        remote = {h.subscription_id: h for h in ado.list_subscriptions()}
        by_username = {h.username: h for h in remote.values() if h.username}
        outcomes = []
        for event_type, version in HOOK_EVENTS:
            with self.db.session() as s:
                record = s.scalar(select(HookSubscriptionRecord).where(
                    HookSubscriptionRecord.repository_id == repository_id,
                    HookSubscriptionRecord.event_type == event_type))
                if record is None:
                    record = self._new_hook_record(s, repository_id, organization_id, event_type)
                s.expunge(record)
            found = remote.get((record.ado_subscription_id or "").lower()) or by_username.get(record.username)
            outcome, why = self._repair_hook(ado, record, found, repo, version, by_admin=by_admin)
            outcomes.append((outcome, event_type, why))
        return outcomes

    def _repair_hook(self, ado: AzureDevOpsClient, record: HookSubscriptionRecord, found: HookSubscription | None,
                     repo: dict, version: str, *, by_admin: bool) -> tuple[str, str]:
        status = found.status if found is not None else HookStatus.MISSING
        verdict = hook_verdict(status, url_ok=found is not None and found.url == self.webhook_url(),
                               by_admin=by_admin)
        password = self.box.decrypt(record.password_enc)
        args = {"event_type": record.event_type, "resource_version": version, "project_id": repo["project_id"],
                "repository_id": repo["id"], "url": self.webhook_url(), "username": record.username}
        outcome = "unchanged"
        try:
            if verdict.repair is Repair.UPDATE:
                found = ado.replace_subscription(found.subscription_id, password=password, **args)
                outcome = "repaired"
            elif verdict.repair is Repair.RECREATE:
                if found is not None:
                    with contextlib.suppress(NotFound):
                        ado.delete_subscription(found.subscription_id)
                outcome = "created" if record.ado_subscription_id is None else "repaired"
                found = ado.create_subscription(password=password, **args)
        except ApiError as exc:
            self._record_hook(record.id, found, problem=f"could not repair ({verdict.reason}): {_problem(exc)}")
            raise
        problem = verdict.reason if verdict.repair is Repair.SURFACE else None
        self._record_hook(record.id, found, problem=problem,
                          healed=verdict.reason if outcome == "repaired" else None)
        return outcome, verdict.reason

    def _record_hook(self, record_id: int, found: HookSubscription | None, *, problem: str | None,
                     healed: str | None = None) -> None:
        with self.db.session() as s:
            record = s.get(HookSubscriptionRecord, record_id)
            if found is not None:
                record.ado_subscription_id, record.status = found.subscription_id, found.status.value
            else:
                record.status = HookStatus.MISSING.value
            record.problem, record.last_checked_at = problem, utcnow()
            if healed:
                record.healed += 1
                record.last_healed_reason = healed
        if healed:
            log.info("healed service hook %s: %s", record_id, healed)
        if problem:
            log.warning("service hook %s needs a person: %s", record_id, problem)

    def _ensure_dbt_webhook(self, dbt: DbtCloudClient, repository_id: int, account_id: int,
                            job_ids: tuple[int, ...]) -> tuple[str, str]:
        url = f"{self.settings.public_url}{DBT_HOOK_PATH}"
        with self.db.session() as s:
            record = s.scalar(select(DbtWebhookRecord).where(DbtWebhookRecord.repository_id == repository_id))
            if record is None:
                record = DbtWebhookRecord(repository_id=repository_id, dbt_account_id=account_id)
                s.add(record)
                s.flush()
            record_id, webhook_id = record.id, record.dbt_webhook_id
        found: DbtWebhook | None = next((h for h in dbt.list_webhooks() if h.webhook_id == webhook_id), None) \
            if webhook_id else None
        verdict = dbt_webhook_verdict(found, url=url, job_ids=job_ids)
        name = f"ado-dbt bridge (repository {repository_id})"
        outcome, secret = "unchanged", None
        if verdict.repair is Repair.RECREATE:
            created = dbt.create_webhook(name=name, url=url, job_ids=job_ids, event_types=DBT_WEBHOOK_EVENTS)
            found, secret = created, created.hmac_secret
            outcome = "created" if webhook_id is None else "repaired"
        elif verdict.repair is Repair.UPDATE:
            found = dbt.update_webhook(found.webhook_id, name=name, url=url,
                                       job_ids=tuple(sorted(set(job_ids) | set(found.job_ids))),
                                       event_types=tuple(sorted(set(DBT_WEBHOOK_EVENTS) | set(found.event_types))))
            outcome = "repaired"
        problem = None
        with self.db.session() as s:
            record = s.get(DbtWebhookRecord, record_id)
            record.dbt_webhook_id, record.dbt_account_id = found.webhook_id, account_id
            record.status = "active" if found.active else "inactive"
            if secret:
                record.secret_enc = self.box.encrypt(secret)
            elif outcome == "created" or record.secret_enc is None:
                problem = ("dbt Cloud did not return this webhook's secret: copy it from Account settings → "
                           "Webhooks into the account's webhook_secret")
            record.problem, record.last_checked_at = problem, utcnow()
            if outcome == "repaired":
                record.healed += 1
                record.last_healed_reason = verdict.reason
        detail = f"{found.webhook_id} for jobs {', '.join(map(str, job_ids))} ({verdict.reason})"
        return outcome, detail + (f"; {problem}" if problem else "")

    # -- bulk ----------------------------------------------------------------------------------------------

    def matching_repositories(self, actor: Actor, organization: str, project: str, pattern: str) -> list[dict]:
        """Repositories whose name matches a glob (disabled ones included: set-up reports them as skipped)."""
        return [r for r in self.repositories(actor, organization, project)
                if fnmatch.fnmatchcase(r["name"].lower(), pattern.lower())]

    # -- undo ----------------------------------------------------------------------------------------------

    def unlink(self, repository_id: int, actor: Actor, *, remove_policy: bool = False) -> list[Step]:
        """Remove a repository's subscriptions, dbt webhook and (when asked) the branch policy, then forget
        the repository. What Azure DevOps or dbt Cloud no longer has is fine; a refusal stops before
        forgetting anything, so the undo can be retried."""
        with self.db.session() as s:
            repo = s.get(Repository, repository_id)
            if repo is None:
                raise OnboardingError(f"no repository {repository_id} is linked")
            org_name, project_id, policy_id = repo.organization.name, repo.ado_project_id, repo.policy_id
            account_id = repo.dbt_account_id
            hooks = [(h.id, h.ado_subscription_id, h.event_type) for h in s.scalars(
                select(HookSubscriptionRecord).where(HookSubscriptionRecord.repository_id == repository_id))]
            dbt_hook = s.scalar(select(DbtWebhookRecord.dbt_webhook_id).where(
                DbtWebhookRecord.repository_id == repository_id))
        steps: list[Step] = []
        ado = self.azure_devops(actor, org_name)
        gone = 0
        for _, subscription_id, _event in hooks:
            if subscription_id:
                try:
                    ado.delete_subscription(subscription_id)
                    gone += 1
                except NotFound:
                    pass
        steps.append(Step("service hooks", "removed", f"{gone} of {len(hooks)} subscriptions deleted "
                                                      "(the rest were already gone)"))
        if dbt_hook:
            try:
                self._dbt(account_id).delete_webhook(dbt_hook)
                steps.append(Step("dbt webhook", "removed", dbt_hook))
            except NotFound:
                steps.append(Step("dbt webhook", "removed", f"{dbt_hook} was already gone"))
        if remove_policy and policy_id:
            try:
                ado.delete_policy(project_id, policy_id)
                steps.append(Step("branch policy", "removed", f"policy {policy_id}"))
            except NotFound:
                steps.append(Step("branch policy", "removed", f"policy {policy_id} was already gone"))
        elif policy_id:
            steps.append(Step("branch policy", "kept", f"policy {policy_id} still requires the status: remove it "
                                                       "in Azure DevOps or unlink with the policy"))
        with self.db.session() as s:
            s.execute(delete(HookSubscriptionRecord).where(HookSubscriptionRecord.repository_id == repository_id))
            s.execute(delete(DbtWebhookRecord).where(DbtWebhookRecord.repository_id == repository_id))
            s.execute(delete(CiRun).where(CiRun.pull_request_ref.in_(
                select(PullRequestRecord.id).where(PullRequestRecord.repository_id == repository_id))))
            s.execute(delete(PullRequestRecord).where(PullRequestRecord.repository_id == repository_id))
            s.execute(update(Delivery).where(Delivery.repository_id == repository_id).values(repository_id=None))
            s.execute(delete(Repository).where(Repository.id == repository_id))
        steps.append(Step("link", "removed", "the bridge no longer acts on this repository's pull requests"))
        log.info("unlinked repository %s (%s) by %s", repository_id, org_name, actor.name)
        return steps

    # -- health --------------------------------------------------------------------------------------------

    def check_health(self) -> dict:
        """List each organization's subscriptions (as its configured identity) and each account's webhooks;
        heal what may be healed, record what a person must fix. Returns counts by what was found."""
        counts: dict[str, int] = {}
        with self.db.session() as s:
            orgs = s.execute(select(Organization.id, Organization.name).where(Organization.id.in_(
                select(HookSubscriptionRecord.organization_id)))).all()
            accounts = s.scalars(select(DbtWebhookRecord.dbt_account_id).distinct()).all()
        for org_id, org_name in orgs:
            with self.lock(f"hooks:{org_id}"):
                self._check_org(org_id, org_name, counts)
        for account_id in accounts:
            self._check_account(account_id, counts)
        return counts

    def _check_org(self, org_id: int, org_name: str, counts: dict) -> None:
        with self.db.session() as s:
            records = s.scalars(select(HookSubscriptionRecord).where(
                HookSubscriptionRecord.organization_id == org_id)).all()
            repos = {r.id: {"id": r.ado_repository_id, "project_id": r.ado_project_id}
                     for r in s.scalars(select(Repository).where(Repository.organization_id == org_id))}
            for r in records:
                s.expunge(r)
        try:
            ado = self.azure_devops(Actor(f"organization {org_name}"), org_name)
            remote = {h.subscription_id: h for h in ado.list_subscriptions()}
        except BridgeError as exc:
            problem = (f"could not list service hooks of {org_name} as its configured identity: {_problem(exc)} "
                       "(it needs View subscriptions permission)")
            with self.db.session() as s:
                s.execute(update(HookSubscriptionRecord).where(HookSubscriptionRecord.organization_id == org_id)
                          .values(problem=problem, last_checked_at=utcnow()))
            counts["unchecked"] = counts.get("unchecked", 0) + len(records)
            log.warning(problem)
            return
        versions = dict(HOOK_EVENTS)
        for record in records:
            found = remote.get((record.ado_subscription_id or "").lower())
            try:
                outcome, _why = self._repair_hook(ado, record, found, repos[record.repository_id],
                                                  versions.get(record.event_type, "1.0"), by_admin=False)
            except ApiError:
                outcome = "unhealed"
            key = "healed" if outcome in ("repaired", "created") else outcome
            counts[key] = counts.get(key, 0) + 1

    def _check_account(self, account_id: int, counts: dict) -> None:
        with self.db.session() as s:
            records = s.execute(select(DbtWebhookRecord.id, DbtWebhookRecord.repository_id, Repository.ci_job_id,
                                       Repository.teardown_job_id).join(Repository, Repository.id ==
                                                                        DbtWebhookRecord.repository_id)
                                .where(DbtWebhookRecord.dbt_account_id == account_id)).all()
        try:
            dbt = self._dbt(account_id)
        except BridgeError as exc:
            log.warning("dbt webhooks of account %s not checked: %s", account_id, exc)
            return
        for _record_id, repository_id, ci_job, teardown in records:
            try:
                outcome, _ = self._ensure_dbt_webhook(dbt, repository_id, account_id,
                                                      tuple(j for j in (ci_job, teardown) if j))
            except BridgeError as exc:
                with self.db.session() as s:
                    s.execute(update(DbtWebhookRecord).where(DbtWebhookRecord.id == _record_id).values(
                        problem=f"could not check or heal: {_problem(exc)}", last_checked_at=utcnow()))
                outcome = "unhealed"
            key = "healed" if outcome in ("repaired", "created") else outcome
            counts[f"dbt {key}"] = counts.get(f"dbt {key}", 0) + 1

    # -- credential rotation ----------------------------------------------------------------------------------

    def rotate(self, actor: Actor, *, repository_id: int | None = None,
               grace: timedelta = timedelta(minutes=10)) -> list[Step]:
        """New Basic credentials for each subscription without dropping deliveries: the receiver accepts the old
        password for ``grace`` while Azure DevOps switches; if Azure DevOps refuses the change, the old
        credentials stay in force."""
        with self.db.session() as s:
            query = select(HookSubscriptionRecord).where(HookSubscriptionRecord.ado_subscription_id.is_not(None))
            if repository_id is not None:
                query = query.where(HookSubscriptionRecord.repository_id == repository_id)
            records = s.scalars(query.order_by(HookSubscriptionRecord.id)).all()
            work = [(r.id, r.repository_id, r.event_type, r.ado_subscription_id, r.username, r.password_enc)
                    for r in records]
            repos = {rid: (org, {"id": repo, "project_id": project}) for rid, org, repo, project in s.execute(
                select(Repository.id, Organization.name, Repository.ado_repository_id, Repository.ado_project_id)
                .join(Organization).where(Repository.id.in_({w[1] for w in work})))}
        if not work:
            raise OnboardingError("no service-hook subscriptions to rotate" +
                                  (f" for repository {repository_id}" if repository_id else ""))
        versions = dict(HOOK_EVENTS)
        steps, clients = [], {}
        for record_id, repo_id, event_type, subscription_id, username, old_enc in work:
            org_name, repo = repos[repo_id]
            new_password = secrets.token_urlsafe(32)
            with self.db.session() as s:  # first the receiver learns to accept both
                record = s.get(HookSubscriptionRecord, record_id)
                record.previous_password_enc, record.previous_valid_until = old_enc, utcnow() + grace
                record.password_enc = self.box.encrypt(new_password)
            try:
                ado = clients.get(org_name) or clients.setdefault(org_name, self.azure_devops(actor, org_name))
                ado.replace_subscription(subscription_id, event_type=event_type,
                                         resource_version=versions.get(event_type, "1.0"),
                                         project_id=repo["project_id"], repository_id=repo["id"],
                                         url=self.webhook_url(), username=username, password=new_password)
            except BridgeError as exc:
                with self.db.session() as s:  # Azure DevOps still sends the old password: keep it
                    record = s.get(HookSubscriptionRecord, record_id)
                    record.password_enc, record.previous_password_enc = old_enc, None
                    record.previous_valid_until = None
                steps.append(Step(f"{org_name} {event_type}", "failed", f"kept the old credentials: {_problem(exc)}"))
                continue
            steps.append(Step(f"{org_name} {event_type}", "rotated",
                              f"{username}: old password accepted until {grace.total_seconds():.0f}s from now"))
        return steps


class _SetupRun:
    """One set-up of one repository: the steps in order, each reporting what it found and did."""

    def __init__(self, onboarding: Onboarding, request: SetupRequest, actor: Actor):
        self.o, self.request, self.actor = onboarding, request, actor
        self.report = SetupReport(f"{request.organization}/{request.project}/{request.repository}")
        self.context = StatusContext(request.status_genre, request.status_name)
        self.ado: AzureDevOpsClient | None = None
        self.repo: dict = {}
        self.job: dict = {}
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
            report.steps.append(Step(name, "failed", _problem(exc)))
        except LockBusy as exc:
            report.steps.append(Step(name, "failed", f"another set-up or health check is changing these "
                                                     f"subscriptions ({exc}); retry in a moment"))

    def repository(self) -> Step:
        request = self.request
        self.ado = self.o.azure_devops(self.actor, request.organization)
        try:
            info = self.ado.get_repository(request.project, request.repository)
        except NotFound:
            raise StepFailed("failed", f"{self.actor.name} cannot see repository {request.repository} in project "
                                       f"{request.project} (it does not exist, or they lack Read access)") from None
        if info.get("is_disabled"):
            raise StepFailed("skipped", f"repository {info['name']} is disabled in Azure DevOps")
        self.repo = info
        return Step("repository", "unchanged", f"{info['project_name']}/{info['name']} ({info['id']})")

    def permissions(self) -> Step:
        repo = self.repo
        checks = [(SERVICE_HOOKS_NAMESPACE, f"PublisherSecurity/{repo['project_id']}", EDIT_SUBSCRIPTIONS)]
        names = ["Edit subscriptions (Service hooks) on the project"]
        if self.request.policy:
            checks.append((GIT_REPOSITORIES_NAMESPACE, f"repoV2/{repo['project_id']}/{repo['id']}", EDIT_POLICIES))
            names.append("Edit policies on the repository")
        granted = self.ado.has_permissions(checks)
        missing = [n for n, ok in zip(names, granted, strict=False) if not ok]
        if missing:
            raise StepFailed("refused", f"{self.actor.name} lacks {' and '.join(missing)} in "
                                        f"{self.request.organization}/{repo['project_name']}. A Project "
                                        "Administrator can grant it (Project settings → Permissions, or "
                                        "Repos → Security for policies), or can run this set-up instead.")
        return Step("permissions", "unchanged", "; ".join(names) + ": granted")

    def ci_job(self) -> Step:
        request = self.request
        dbt = self.o._dbt(request.dbt_account)
        if request.ci_job:
            self.job = dbt.get_job(request.ci_job)
            warning = _job_warning(self.job)
            return Step("ci job", "linked", f"job {self.job['id']} {self.job['name']!r}"
                                            + (f" ({warning})" if warning else ""))
        spec = request.new_job
        if spec is None:
            raise StepFailed("failed", "choose an existing dbt Cloud CI job or ask for one to be created")
        existing = [j for j in dbt.list_jobs(project_id=spec.project_id)
                    if j["name"] == spec.name and j["environment_id"] == spec.environment_id]
        if existing:  # set-up ran before: the job it created is reused, not duplicated
            self.job = existing[0]
            return Step("ci job", "unchanged", f"job {self.job['id']} {spec.name!r} exists")
        if request.only and "ci job" not in request.only:
            raise StepFailed("failed", "no CI job yet; retry the 'ci job' step")
        project_id = spec.project_id or next((e["project_id"] for e in self.o.dbt_environments(request.dbt_account)
                                              if e["id"] == spec.environment_id), None)
        if project_id is None:
            raise StepFailed("failed", f"dbt Cloud environment {spec.environment_id} was not found")
        self.job = dbt.create_job(ci_job_definition(
            account_id=request.dbt_account, project_id=project_id, environment_id=spec.environment_id,
            name=spec.name, deferring_environment_id=spec.deferring_environment_id, steps=spec.steps))
        return Step("ci job", "created", f"job {self.job['id']} {spec.name!r}: {'; '.join(spec.steps)}")

    def link(self) -> Step:
        request, repo, job, context, actor = self.request, self.repo, self.job, self.context, self.actor
        with self.o.db.session() as s:
            org = s.scalar(select(Organization).where(func.lower(Organization.name) == request.organization.lower()))
            created_org = org is None
            if created_org:
                org = Organization(name=request.organization, url=self.ado.base_url,
                                   identity_kind="user" if actor.upn else "pat", identity_upn=actor.upn)
                s.add(org)
                s.flush()
            row, created, changed = link_repository(s, org.id, repo, {
                "dbt_account_id": request.dbt_account, "ci_job_id": job["id"],
                "teardown_job_id": request.teardown_job,
                "target_branches": [normalize_ref(request.target_branch)] if request.target_branch else [],
                "drafts": request.drafts, "status_genre": context.genre, "status_name": context.name})
            row.set_up_by = actor.name
            s.flush()
            self.repository_id = self.report.repository_id = row.id
            self.organization_id = org.id
        note = f" (organization {request.organization} added; workers act as {actor.upn})" if created_org else ""
        if created:
            return Step("link", "created", f"linked to dbt Cloud account {request.dbt_account}, job {job['id']}, "
                                           f"status {context.genre}/{context.name}{note}")
        return Step("link", "repaired" if changed else "unchanged",
                    f"updated {', '.join(changed)}" if changed else "already linked")

    def hooks(self) -> Step:
        with self.o.lock(f"hooks:{self.organization_id}"):
            outcomes = self.o._ensure_hooks(self.ado, self.repository_id, self.organization_id, self.repo,
                                            by_admin=True)
        created = sum(1 for o in outcomes if o[0] == "created")
        repaired = [f"{e}: {why}" for kind, e, why in outcomes if kind == "repaired"]
        outcome = "created" if created == len(outcomes) else "repaired" if created or repaired else "unchanged"
        detail = f"{len(outcomes)} subscriptions ({', '.join(e for _, e, _ in outcomes)})"
        if repaired:
            detail += "; repaired " + "; ".join(repaired)
        return Step("service hooks", outcome, detail)

    def dbt_webhook(self) -> Step:
        request = self.request
        jobs = tuple(j for j in (self.job["id"], request.teardown_job) if j)
        kind, why = self.o._ensure_dbt_webhook(self.o._dbt(request.dbt_account), self.repository_id,
                                               request.dbt_account, jobs)
        return Step("dbt webhook", kind, why)

    def policy(self) -> Step:
        request, repo, context = self.request, self.repo, self.context
        if not request.policy:
            return Step("branch policy", "skipped", "not asked for (the PR can complete without a dbt run)")
        settings = status_policy_settings(repo["id"], request.target_branch, context,
                                          reset_on_new_changes=request.reset_on_new_changes)
        for existing in self.ado.list_status_policies(repo["project_id"]):
            if _same_policy(existing["settings"], settings):
                self.o._set_policy(self.repository_id, existing["id"])
                return Step("branch policy", "unchanged", f"policy {existing['id']} requires "
                                                         f"{context.genre}/{context.name}")
        policy_id = self.ado.create_status_policy(repo["project_id"], settings)
        self.o._set_policy(self.repository_id, policy_id)
        reset = ", reset on new changes" if request.reset_on_new_changes else ""
        return Step("branch policy", "created", f"policy {policy_id}: {normalize_ref(request.target_branch)} "
                                               f"requires {context.genre}/{context.name} to succeed{reset}")


def _matches(name: str, search: str) -> bool:
    return not search or search.lower() in name.lower() or fnmatch.fnmatchcase(name.lower(), search.lower())


def _job_warning(job: dict) -> str:
    triggers = job.get("triggers") or {}
    if triggers.get("git_provider_webhook") or triggers.get("github_webhook"):
        return "warning: the job also runs on dbt Cloud's own Git trigger, so PRs would run twice; turn it off"
    if job.get("job_type") not in (None, "ci"):
        return f"note: job type is {job.get('job_type')}, not ci"
    return ""


def _same_policy(existing: dict, wanted: dict) -> bool:
    def scope(settings: dict) -> set:
        return {(sc.get("repositoryId", "").lower(), sc.get("refName")) for sc in settings.get("scope") or []}

    return (existing.get("statusGenre") == wanted["statusGenre"] and existing.get("statusName") == wanted["statusName"]
            and scope(wanted) <= scope(existing))
