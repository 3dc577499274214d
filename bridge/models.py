"""Database tables (SQLAlchemy 2). Secrets are stored only as Fernet tokens (columns named ``*_enc``)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    false,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .catalog import AdoRepository
from .people import PersonId


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands timezone-aware columns back naive (PostgreSQL does not): read them as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Organization(Base):
    """An Azure DevOps organization (or Azure DevOps Server collection) and how to talk to it."""

    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    url: Mapped[str] = mapped_column(String(500))
    pat_enc: Mapped[str | None] = mapped_column(Text)
    webhook_username: Mapped[str | None] = mapped_column(String(256), unique=True)
    webhook_password_enc: Mapped[str | None] = mapped_column(Text)
    # Who workers act as here: "pat", "user" (a connected person, by tenant and object id) or "service_principal".
    identity_kind: Mapped[str] = mapped_column(String(20), default="pat", server_default="pat")
    identity_tid: Mapped[str | None] = mapped_column(String(64))
    identity_oid: Mapped[str | None] = mapped_column(String(64))
    sp_tenant_id: Mapped[str | None] = mapped_column(String(64))
    sp_client_id: Mapped[str | None] = mapped_column(String(64))
    sp_secret_enc: Mapped[str | None] = mapped_column(Text)
    # The REST API version its server serves (7.1 on Services; Server 2022: 7.0, 2020: 6.0), and a CA bundle to
    # trust for it (a corporate CA in front of an on-premises server); certificates are always verified.
    api_version: Mapped[str] = mapped_column(String(10), default="7.1", server_default="7.1")
    ca_bundle: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    repositories: Mapped[list[Repository]] = relationship(back_populates="organization")


class DbtAccount(Base):
    """A dbt Cloud account: its API host, token and webhook secret."""

    __tablename__ = "dbt_accounts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)  # dbt's account id
    url: Mapped[str] = mapped_column(String(500))
    api_token_enc: Mapped[str | None] = mapped_column(Text)
    webhook_secret_enc: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Repository(Base):
    """An Azure DevOps repository linked to a dbt Cloud CI job."""

    __tablename__ = "repositories"
    __table_args__ = (UniqueConstraint("organization_id", "ado_repository_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    ado_project_id: Mapped[str] = mapped_column(String(64))
    ado_project_name: Mapped[str] = mapped_column(String(300))
    ado_repository_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(300))
    dbt_account_id: Mapped[int] = mapped_column(ForeignKey("dbt_accounts.id"))
    ci_job_id: Mapped[int] = mapped_column(BigInteger)
    teardown_job_id: Mapped[int | None] = mapped_column(BigInteger)
    target_branches: Mapped[list] = mapped_column(JSON, default=list)
    drafts: Mapped[str] = mapped_column(String(10), default="skip")
    status_genre: Mapped[str] = mapped_column(String(200), default="dbt-cloud")
    status_name: Mapped[str] = mapped_column(String(200), default="ci")
    policy_id: Mapped[int | None] = mapped_column(Integer)           # the status branch policy set-up created
    set_up_by: Mapped[str | None] = mapped_column(String(320))        # who last ran set-up (console or CLI)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    organization: Mapped[Organization] = relationship(back_populates="repositories")
    dbt_account: Mapped[DbtAccount] = relationship()

    @property
    def ado(self) -> AdoRepository:
        """The repository as Azure DevOps described it when it was linked."""
        return AdoRepository(id=self.ado_repository_id, name=self.name, project_id=self.ado_project_id,
                             project_name=self.ado_project_name)


class HookSubscriptionRecord(Base):
    """An Azure DevOps service-hook subscription the bridge registered for a repository, with its own Basic
    credentials (the receiver accepts them alongside the organization's), and what the health check found."""

    __tablename__ = "hook_subscriptions"
    __table_args__ = (UniqueConstraint("repository_id", "event_type"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id"), index=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    event_type: Mapped[str] = mapped_column(String(100))
    ado_subscription_id: Mapped[str | None] = mapped_column(String(64))
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_enc: Mapped[str] = mapped_column(Text)
    # While credentials are rotated, deliveries already signed with the old ones are still accepted.
    previous_password_enc: Mapped[str | None] = mapped_column(Text)
    previous_valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(40), default="missing")  # Azure DevOps' status, or "missing"
    problem: Mapped[str | None] = mapped_column(Text)                    # what a person must do; None if fine
    healed: Mapped[int] = mapped_column(Integer, default=0)
    last_healed_reason: Mapped[str | None] = mapped_column(Text)
    last_checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class DbtWebhookRecord(Base):
    """The dbt Cloud webhook subscription reporting a repository's CI (and teardown) runs; its HMAC secret
    is kept encrypted and checked for deliveries that name this subscription."""

    __tablename__ = "dbt_webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id"), unique=True)
    dbt_account_id: Mapped[int] = mapped_column(ForeignKey("dbt_accounts.id"))
    dbt_webhook_id: Mapped[str | None] = mapped_column(String(64), index=True)
    secret_enc: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(40), default="missing")  # active | inactive | missing
    problem: Mapped[str | None] = mapped_column(Text)
    healed: Mapped[int] = mapped_column(Integer, default=0)
    last_healed_reason: Mapped[str | None] = mapped_column(Text)
    last_checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class OnboardingJob(Base):
    """Work the console asked the workers for (list projects, set up or unlink a repository), with each
    step's outcome, so the page can show progress and a failed step can be retried alone."""

    __tablename__ = "onboarding_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))                 # contracts.JobKind
    requested_by: Mapped[str] = mapped_column(String(400))       # a session subject (entra:<oid>@<tid>, token:admin)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(20), default="queued")  # queued | running | done | failed
    steps: Mapped[list] = mapped_column(JSON, default=list)       # [{step, outcome, detail}]
    result: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Delivery(Base):
    """One accepted webhook delivery: the outbox between the receiver and the workers.

    Written before the receiver answers 2xx; ``dispatched_at`` is set once the broker took the task,
    ``processed_at`` once a worker finished with it. Beat re-enqueues rows left undispatched.
    """

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("source", "dedupe_key"),
                      # a PR's deliveries newest first, a page at a time, however many it had
                      Index("ix_deliveries_pull_request", "repository_id", "pull_request_id", "id"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    source: Mapped[str] = mapped_column(String(20))          # azure-devops | dbt-cloud
    dedupe_key: Mapped[str] = mapped_column(String(300))
    event_type: Mapped[str] = mapped_column(String(100))
    repository_id: Mapped[int | None] = mapped_column(ForeignKey("repositories.id"), index=True)
    dbt_account_id: Mapped[int | None] = mapped_column(BigInteger)
    pull_request_id: Mapped[int | None] = mapped_column(Integer)  # the PR an Azure DevOps delivery names
    event: Mapped[dict] = mapped_column(JSON)                 # the parsed domain event, never the raw body
    state: Mapped[str] = mapped_column(String(20), default="received", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PullRequestRecord(Base):
    """What the bridge last learned of a pull request (for the console and for teardown)."""

    __tablename__ = "pull_requests"
    __table_args__ = (UniqueConstraint("repository_id", "pull_request_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id"))
    pull_request_id: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(500), default="")
    status: Mapped[str] = mapped_column(String(20), default="active")
    is_draft: Mapped[bool] = mapped_column(Boolean, default=False)
    target_ref: Mapped[str] = mapped_column(String(500), default="")
    source_ref: Mapped[str] = mapped_column(String(500), default="", server_default="")
    head_commit: Mapped[str | None] = mapped_column(String(64))
    last_reason: Mapped[str | None] = mapped_column(Text)
    reconciled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    summary_thread_id: Mapped[int | None] = mapped_column(Integer)   # the run summary's thread on the PR
    summary_comment_id: Mapped[int | None] = mapped_column(Integer)  # and its comment, edited in place

    runs: Mapped[list[CiRun]] = relationship(back_populates="pull_request", order_by="CiRun.id")


class CiRun(Base):
    """A dbt Cloud run the bridge started (or failed to start) for a pull request."""

    __tablename__ = "ci_runs"
    __table_args__ = (
        # The poller's and /metrics' live runs: the few unfinished among every run ever started.
        Index("ix_ci_runs_live", "updated_at", postgresql_where=text("status IS NULL OR status < 10"),
              sqlite_where=text("status IS NULL OR status < 10")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pull_request_ref: Mapped[int] = mapped_column(ForeignKey("pull_requests.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10), default="ci")
    commit: Mapped[str | None] = mapped_column(String(64))
    iteration_id: Mapped[int | None] = mapped_column(Integer)
    dbt_account_id: Mapped[int] = mapped_column(BigInteger)
    dbt_job_id: Mapped[int] = mapped_column(BigInteger)
    dbt_run_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    status: Mapped[int | None] = mapped_column(Integer)       # dbt run status code
    status_message: Mapped[str | None] = mapped_column(Text)
    failure_tally: Mapped[str | None] = mapped_column(String(300))  # "2 models, 1 test", from its run_results
    summary_posted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    href: Mapped[str | None] = mapped_column(String(1000))
    superseded: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    posted_state: Mapped[str | None] = mapped_column(String(20))
    posted_description: Mapped[str | None] = mapped_column(Text)
    start_error: Mapped[str | None] = mapped_column(Text)
    duration_seconds: Mapped[float | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    pull_request: Mapped[PullRequestRecord] = relationship(back_populates="runs")


class Connection(Base):
    """An Azure DevOps identity connected through Entra ID: whose tokens, which organizations, how healthy."""

    __tablename__ = "connections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    home_account_id: Mapped[str] = mapped_column(String(200), unique=True)   # MSAL's "{oid}.{tid}"
    oid: Mapped[str] = mapped_column(String(64))
    tenant_id: Mapped[str] = mapped_column(String(64))
    upn: Mapped[str] = mapped_column(String(320), index=True)
    display_name: Mapped[str] = mapped_column(String(300), default="")
    profile_id: Mapped[str | None] = mapped_column(String(64))
    organizations: Mapped[list] = mapped_column(JSON, default=list)
    token_cache_enc: Mapped[str | None] = mapped_column(Text)               # Fernet(MSAL cache JSON)
    status: Mapped[str] = mapped_column(String(20), default="ok")           # ok | needs_reauth
    status_reason: Mapped[str | None] = mapped_column(Text)
    connected_by: Mapped[str | None] = mapped_column(String(400))       # who connected it: a session subject
    connected_by_name: Mapped[str | None] = mapped_column(String(320))  # … as shown
    # The Entra tenant signed in through, when not the configured authority's: a guest of the tenant an
    # organization is connected to signs in there, and tokens are refreshed there.
    sign_in_tenant: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    @classmethod
    def of(cls, person: PersonId):
        """The condition that picks a person's connections (by tenant and object id, whatever the case)."""
        return and_(func.lower(cls.tenant_id) == person.tenant_id, func.lower(cls.oid) == person.object_id)


class AuthFlow(Base):
    """A connect flow in progress, kept server-side (any web worker or host can finish it), keyed by its
    OAuth state, bound to whoever started it, short-lived and single-use."""

    __tablename__ = "auth_flows"

    state: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str] = mapped_column(String(320))          # what must present itself to finish the flow
    started_by: Mapped[str] = mapped_column(String(400), default="")  # the session subject who started it
    purpose: Mapped[str] = mapped_column(String(20), default="connect")  # connect | sign-in
    flow_enc: Mapped[str] = mapped_column(Text)                              # Fernet(MSAL flow incl. PKCE verifier)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ConsoleSession(Base):
    """A signed-in console session, kept server-side: the browser holds only a random id, of which only the
    hash is stored. Deleted at sign-out; refused after its absolute lifetime or when idle too long."""

    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)   # sha256 of the cookie's random id
    subject: Mapped[str] = mapped_column(String(400), default="", index=True)  # who: entra:<oid>@<tid> | token:admin
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class Notification(Base):
    """A problem a person was told about (bridge/notifications.py): kept while it lasts, so it is posted once."""

    __tablename__ = "notifications"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    title: Mapped[str] = mapped_column(String(500), default="")
    notified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Activity(Base):
    """One thing the bridge did or decided, appended in the transaction of the change it records and never
    changed: a reconcile's decision and why, a run started, refused, cancelled or settled, a status posted, a
    command, a replay, a duplicate delivery. A delivery's own receipt is its deliveries row (written by the
    receiver's one INSERT); the PR page reads both. Pruned with the deliveries (``BRIDGE_RETENTION_DAYS``)."""

    __tablename__ = "activity"
    __table_args__ = (Index("ix_activity_pull_request", "repository_id", "pull_request_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(30))           # history.record.Kind
    repository_id: Mapped[int | None] = mapped_column(Integer)  # no foreign key: unlinking deletes these rows
    pull_request_id: Mapped[int | None] = mapped_column(Integer)
    delivery_id: Mapped[int | None] = mapped_column(BigInteger)
    ci_run_id: Mapped[int | None] = mapped_column(Integer)
    dbt_run_id: Mapped[int | None] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(400), default="worker")  # worker | cli | a session subject
    message: Mapped[str] = mapped_column(Text)                # one sentence, as shown
