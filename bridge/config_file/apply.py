"""Making the database say what the file says: the changes (with a diff per object, secrets masked), and what
the file no longer lists (removed only when asked: ``apply --prune``).

``apply`` runs inside the caller's transaction; ``bridge config plan`` runs the same code and rolls back, so the
plan is what apply would do, not a second implementation of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..catalog import AdoRepository
from ..crypto import SecretBox
from ..errors import ApiError, ConfigError
from ..models import Connection, DbtAccount, Organization, Repository
from ..people import PersonId
from .schema import Desired

MASK = "•••"


@dataclass(frozen=True)
class Diff:
    key: str      # as the file names it (``webhook.password``)
    before: str
    after: str


@dataclass
class Change:
    kind: str     # organization | dbt account | repository
    name: str
    action: str   # created | updated | unchanged | removed | not in the file
    diffs: list[Diff] = field(default_factory=list)


RepositoryResolver = Callable[[Organization, dict], AdoRepository]
"""(organization as just updated, repository entry) -> the repository; asks Azure DevOps as the identity the
organization is configured to act as."""


class _Recorder:
    """Sets attributes and notes what changed, by the file's key."""

    def __init__(self, box: SecretBox | None, created: bool):
        self.box = box
        self.created = created
        self.diffs: list[Diff] = []

    def set(self, obj, attr: str, value, key: str) -> None:
        before = getattr(obj, attr)
        if before == value:
            return
        setattr(obj, attr, value)
        self.diffs.append(Diff(key, _shown(None if self.created else before), _shown(value)))

    def secret(self, obj, attr: str, value: str | None, key: str) -> None:
        current = getattr(obj, attr)
        if value is None:
            if current is not None:
                setattr(obj, attr, None)
                self.diffs.append(Diff(key, MASK, "(none)"))
            return
        if current is not None and self.box is not None and self.box.decrypt(current) == value:
            return
        if self.box is None:
            raise ConfigError(f"{key}: no key to encrypt it with (BRIDGE_SECRET_KEY)")
        setattr(obj, attr, self.box.encrypt(value))
        self.diffs.append(Diff(key, "(none)" if current is None else MASK, f"{MASK} (new)"))

    def change(self, kind: str, name: str) -> Change:
        action = "created" if self.created else ("updated" if self.diffs else "unchanged")
        return Change(kind, name, action, self.diffs)


def _shown(value) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def apply(session: Session, desired: Desired, box: SecretBox, resolve: RepositoryResolver) -> list[Change]:
    """Upsert organizations, accounts and repositories. Runs inside the caller's transaction: if any step
    fails (a repository Azure DevOps does not know, say) the caller rolls everything back."""
    changes: list[Change] = []
    orgs: dict[str, Organization] = {}
    for entry in desired.organizations:
        org = session.scalar(select(Organization).where(Organization.name == entry["name"]))
        record = _Recorder(box, created=org is None)
        if org is None:
            org = Organization(name=entry["name"], url=entry["url"])
            session.add(org)
        webhook = entry.get("webhook") or {}
        identity = entry.get("identity") or {"kind": "pat"}
        person = _person(session, entry["name"], identity) if identity["kind"] == "user" else None
        sp = identity["kind"] == "service_principal"
        record.set(org, "url", entry["url"], "url")
        record.secret(org, "pat_enc", entry.get("pat"), "pat")
        record.set(org, "webhook_username", webhook.get("username"), "webhook.username")
        record.secret(org, "webhook_password_enc", webhook.get("password"), "webhook.password")
        record.set(org, "identity_kind", identity["kind"], "identity.kind")
        record.set(org, "identity_tid", person.tenant_id if person else None, "identity.tenant")
        record.set(org, "identity_oid", person.object_id if person else None, "identity.object_id")
        record.set(org, "sp_tenant_id", identity.get("tenant") if sp else None, "identity.tenant")
        record.set(org, "sp_client_id", identity.get("client_id"), "identity.client_id")
        record.secret(org, "sp_secret_enc", identity.get("client_secret"), "identity.client_secret")
        record.set(org, "api_version", entry["api_version"], "api_version")
        record.set(org, "ca_bundle", entry.get("ca_bundle"), "ca_bundle")
        orgs[entry["name"]] = org
        changes.append(record.change("organization", entry["name"]))
    session.flush()

    for entry in desired.accounts:
        account = session.get(DbtAccount, entry["id"])
        record = _Recorder(box, created=account is None)
        if account is None:
            account = DbtAccount(id=entry["id"], url=entry["url"])
            session.add(account)
        record.set(account, "url", entry["url"], "url")
        record.secret(account, "api_token_enc", entry.get("api_token"), "api_token")
        record.secret(account, "webhook_secret_enc", entry.get("webhook_secret"), "webhook_secret")
        changes.append(record.change("dbt account", str(entry["id"])))
    session.flush()

    for entry in desired.repositories:
        org = orgs[entry["organization"]]
        try:
            info = resolve(org, entry)
        except ApiError as exc:
            raise ConfigError(f"repository {entry['organization']}/{entry['project']}/{entry['repository']}: "
                              f"Azure DevOps could not resolve it: {exc}") from None
        status = entry.get("status") or {}
        _, created, diffs = link_repository(session, org.id, info, {
            "dbt_account_id": entry["dbt_account"], "ci_job_id": entry["ci_job"],
            "teardown_job_id": entry.get("teardown_job"),
            "target_branches": list(entry.get("target_branches") or []), "drafts": entry["drafts"],
            "status_genre": status.get("genre", "dbt-cloud"), "status_name": status.get("name", "ci")})
        name = f"{entry['organization']}/{info.project_name}/{info.name}"
        changes.append(Change("repository", name, "created" if created else ("updated" if diffs else "unchanged"),
                              [] if created else diffs))
    session.flush()
    return changes


@dataclass(frozen=True)
class Unlisted:
    """What the database holds and the file does not list: removed by ``apply --prune`` only."""

    repositories: list[tuple[int, str]]   # (id, organization/project/repository)
    organizations: list[tuple[int, str]]
    accounts: list[int]

    def __len__(self) -> int:
        return len(self.repositories) + len(self.organizations) + len(self.accounts)

    def changes(self, action: str) -> list[Change]:
        return ([Change("repository", name, action) for _, name in self.repositories] +
                [Change("organization", name, action) for _, name in self.organizations] +
                [Change("dbt account", str(a), action) for a in self.accounts])


def unlisted(session: Session, desired: Desired, applied: list[Change]) -> Unlisted:
    """After ``apply`` in the same transaction: the rows the file does not name."""
    kept = {c.name.lower() for c in applied if c.kind == "repository"}
    repositories = [(r.id, f"{r.organization.name}/{r.ado_project_name}/{r.name}")
                    for r in session.scalars(select(Repository).order_by(Repository.id))]
    repositories = [(i, name) for i, name in repositories if name.lower() not in kept]
    names = {o["name"] for o in desired.organizations}
    organizations = [(o.id, o.name) for o in session.scalars(select(Organization).order_by(Organization.name))
                     if o.name not in names]
    ids = {a["id"] for a in desired.accounts}
    accounts = [a for a in session.scalars(select(DbtAccount.id).order_by(DbtAccount.id)) if a not in ids]
    return Unlisted(repositories, organizations, accounts)


def remove(session: Session, stale: Unlisted) -> None:
    """Forget organizations and accounts the file no longer lists (their repositories are unlinked first, by
    the caller, through onboarding: that also removes their service hooks and dbt webhooks)."""
    for organization_id, _ in stale.organizations:
        session.delete(session.get(Organization, organization_id))
    for account_id in stale.accounts:
        session.delete(session.get(DbtAccount, account_id))
    session.flush()


def _person(session: Session, organization: str, identity: dict) -> PersonId:
    """The connected person an organization acts as: by object id and tenant, or by a sign-in name that
    exactly one connection has now (what is kept is the tenant and object id)."""
    if identity.get("object_id"):
        return PersonId(identity["tenant"], identity["object_id"])
    found = session.execute(select(Connection.oid, Connection.tenant_id).where(
        func.lower(Connection.upn) == identity["upn"].lower())).all()
    if len(found) != 1:
        why = "has not connected yet (connect in the console first)" if not found else \
            f"names {len(found)} connections in different tenants"
        raise ConfigError(f"organization {organization}: identity user {identity['upn']!r} {why}; or give "
                          "object_id and tenant instead of upn")
    return PersonId(found[0][1], found[0][0])


_REPOSITORY_KEYS = {"dbt_account_id": "dbt_account", "ci_job_id": "ci_job", "teardown_job_id": "teardown_job",
                    "target_branches": "target_branches", "drafts": "drafts", "status_genre": "status.genre",
                    "status_name": "status.name", "ado_project_id": "project (id)", "ado_project_name": "project",
                    "name": "repository"}


def link_repository(session: Session, organization_id: int, info: AdoRepository,
                    settings: dict) -> tuple[Repository, bool, list[Diff]]:
    """Create or update the bridge's record of a repository (``info`` as Azure DevOps describes it, ``settings``
    its CI columns); returns (row, created, what changed). Shared by the configuration file and onboarding, so
    both link a repository the same way."""
    row = session.scalar(select(Repository).where(Repository.organization_id == organization_id,
                                                  Repository.ado_repository_id == info.id))
    created = row is None
    if created:
        row = Repository(organization_id=organization_id, ado_repository_id=info.id)
        session.add(row)
    wanted = {"ado_project_id": info.project_id, "ado_project_name": info.project_name, "name": info.name,
              **settings}
    record = _Recorder(None, created=created)  # no secrets among these columns
    for column, value in wanted.items():
        record.set(row, column, value, _REPOSITORY_KEYS.get(column, column))
    session.flush()
    return row, created, record.diffs
