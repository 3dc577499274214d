"""Discovery's value types: what the clients make of the wire, and the JSON an onboarding job stores of them."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from bridge import catalog
from bridge.catalog import AdoProject, AdoRepository, DbtCatalog, DbtEnvironment, DbtJob, RepositoryOffer
from bridge.clients.dbt_cloud import DbtCloudClient
from tests.fakes import RecordedTransport

text = st.text(max_size=40)
ids = st.integers(min_value=1, max_value=2**53)
repositories = st.builds(AdoRepository, id=text, name=text, project_id=text, project_name=text,
                         is_disabled=st.booleans())
jobs = st.builds(DbtJob, id=ids, name=text, job_type=st.none() | text, environment_id=st.none() | ids,
                 project_id=st.none() | ids, execute_steps=st.tuples(text, text),
                 triggers_on=st.lists(text, max_size=3).map(tuple), deferring_environment_id=st.none() | ids)
environments = st.builds(DbtEnvironment, id=ids, name=text, project_id=ids, project_name=text,
                         type=st.none() | text, deployment_type=st.none() | text)


def stored(value) -> dict:
    """What the JSON column gives back."""
    return json.loads(json.dumps(catalog.to_json(value)))


@given(st.builds(AdoProject, id=text, name=text))
def test_projects_survive_the_stored_result(project):
    assert catalog.project_from_json(stored(project)) == project


@given(st.builds(RepositoryOffer, repository=repositories, ci_job=st.none() | ids))
def test_repository_offers_survive_the_stored_result(offer):
    back = catalog.offer_from_json(stored(offer))
    assert back == offer and back.linked == (offer.ci_job is not None)


@given(st.builds(DbtCatalog, account_id=ids, jobs=st.lists(jobs, max_size=3).map(tuple),
                 environments=st.lists(environments, max_size=3).map(tuple)))
def test_dbt_catalogs_survive_the_stored_result(found):
    assert catalog.dbt_catalog_from_json(stored(found)) == found


def test_a_job_that_dbt_cloud_also_runs_on_git_events_is_told_apart():
    def job(triggers: dict) -> dict:
        return {"id": 42, "name": "CI", "job_type": "ci", "environment_id": 9, "project_id": 7,
                "execute_steps": ["dbt build"], "triggers": triggers}
    transport = RecordedTransport([
        {"method": "GET", "path": "/api/v2/accounts/1/jobs/42/", "status": 200, "response": {"data": job(
            {"git_provider_webhook": True, "schedule": False})}},
        {"method": "GET", "path": "/api/v2/accounts/1/jobs/42/", "status": 200, "response": {"data": job(
            {"git_provider_webhook": False, "github_webhook": False, "schedule": True})}},
    ])
    dbt = DbtCloudClient("https://cloud.getdbt.com", 1, "token", transport=transport)
    first, second = dbt.get_job(42), dbt.get_job(42)
    assert first.runs_on_git_events and first.triggers_on == ("git_provider_webhook",)
    assert not second.runs_on_git_events and second.triggers_on == ("schedule",)
    assert first.execute_steps == ("dbt build",)
