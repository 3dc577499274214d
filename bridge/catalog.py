"""What discovery finds in Azure DevOps and dbt Cloud: projects, repositories, dbt Cloud jobs and environments.

Plain frozen values; the API clients make them from the wire, onboarding passes them on, and an onboarding job's
stored result holds their JSON (``to_json`` / ``from_json`` here are the only codec for it). Pure: imports
nothing of ours, so every tier may use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

# dbt Cloud job triggers that start runs on their own when a Git provider sends a push or PR event.
GIT_TRIGGERS = ("git_provider_webhook", "github_webhook")


@dataclass(frozen=True)
class AdoProject:
    id: str
    name: str


@dataclass(frozen=True)
class AdoRepository:
    id: str
    name: str
    project_id: str
    project_name: str
    is_disabled: bool = False


@dataclass(frozen=True)
class RepositoryOffer:
    """A repository as discovery shows it: what Azure DevOps says, and the dbt Cloud job linked here if any."""

    repository: AdoRepository
    ci_job: int | None = None

    @property
    def linked(self) -> bool:
        return self.ci_job is not None

    @property
    def name(self) -> str:
        return self.repository.name


@dataclass(frozen=True)
class DbtJob:
    id: int
    name: str
    job_type: str | None = None
    environment_id: int | None = None
    project_id: int | None = None
    execute_steps: tuple[str, ...] = ()
    triggers_on: tuple[str, ...] = ()  # the names of the job's triggers that are switched on
    deferring_environment_id: int | None = None

    @property
    def runs_on_git_events(self) -> bool:
        """Whether dbt Cloud's own Git trigger also runs this job (so each PR would run twice)."""
        return any(t in GIT_TRIGGERS for t in self.triggers_on)


@dataclass(frozen=True)
class DbtProject:
    id: int
    name: str


@dataclass(frozen=True)
class DbtEnvironment:
    id: int
    name: str
    project_id: int
    project_name: str = ""
    type: str | None = None
    deployment_type: str | None = None

    @property
    def kind(self) -> str:
        return self.deployment_type or self.type or ""


@dataclass(frozen=True)
class DbtCatalog:
    """One dbt Cloud account's jobs and environments, as the set-up form offers them."""

    account_id: int
    jobs: tuple[DbtJob, ...] = ()
    environments: tuple[DbtEnvironment, ...] = ()


# -- the JSON of an onboarding job's result --------------------------------------------------------------

def to_json(value) -> dict:
    return asdict(value)


def project_from_json(raw: Mapping) -> AdoProject:
    return AdoProject(id=str(raw["id"]), name=str(raw["name"]))


def offer_from_json(raw: Mapping) -> RepositoryOffer:
    return RepositoryOffer(repository=AdoRepository(**raw["repository"]), ci_job=raw.get("ci_job"))


def dbt_catalog_from_json(raw: Mapping) -> DbtCatalog:
    return DbtCatalog(
        account_id=int(raw["account_id"]),
        jobs=tuple(DbtJob(**{**j, "execute_steps": tuple(j.get("execute_steps") or ()),
                             "triggers_on": tuple(j.get("triggers_on") or ())}) for j in raw.get("jobs") or ()),
        environments=tuple(DbtEnvironment(**e) for e in raw.get("environments") or ()))
