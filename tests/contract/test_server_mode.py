"""Azure DevOps Server: the client speaks each collection's REST API version at its collection URL, and the
sandbox in Server mode answers as a Server 2020 / 2022 would (collection URLs under /tfs, versions above its
own refused with the server's own message, no Entra ID)."""

from __future__ import annotations

import pytest

from bridge import errors
from bridge.clients.azure_devops import AzureDevOpsClient, PersonalAccessToken
from bridge.dev.sandbox import serving
from bridge.dev.sandbox.control import SandboxControl
from bridge.domain import StatusContext, StatusState, StatusUpdate
from bridge.services.connections import check_server

PROJECT = "Data Platform ü"  # a space and a non-ASCII letter, as on-premises projects often have


@pytest.fixture(scope="module")
def sandbox():
    with serving() as (url, _app):
        control = SandboxControl(url)
        control.setup(servers={"Coll2020": "6.0", "Coll2022": "7.0"}, run_defaults={"seconds": 0.2, "queued": 0.1})
        for collection in ("Coll2020", "Coll2022"):
            control._post("/repos", {"org": collection, "project": PROJECT, "name": "dbt-onprem"})
        yield url, control


@pytest.mark.parametrize(("collection", "version"), [("Coll2020", "6.0"), ("Coll2022", "7.0")])
def test_the_pull_request_calls_work_at_a_collection_url_and_its_version(sandbox, collection, version):
    url, control = sandbox
    since = len(control.exchanges())
    ado = AzureDevOpsClient(f"{url}/tfs/{collection}", PersonalAccessToken("sandbox-pat"), api_version=version)
    assert ado.connection_data()["deployment"] == "onPremises"
    assert check_server(ado, collection).startswith("Azure DevOps Server, REST API")
    repo = ado.get_repository(PROJECT, "dbt-onprem")
    assert repo.project_name == PROJECT
    opened = control.open_pr(org=collection, repository="dbt-onprem", deliver=False)
    pr = ado.get_pull_request(repo.project_id, repo.id, opened["pr"])
    [iteration] = ado.list_iterations(repo.project_id, repo.id, pr.pull_request_id)
    ado.post_status(repo.project_id, repo.id, pr.pull_request_id, StatusContext("dbt-cloud", "ci"),
                    StatusUpdate(StatusState.PENDING, "queued", iteration.iteration_id))
    sent = [e for e in control.exchanges()[since:] if e["service"] == "ado"]
    assert sent and all(e["path"].startswith(f"/tfs/{collection}/") for e in sent)
    assert {e["query"]["api-version"][0].removesuffix("-preview") for e in sent} == {version}
    assert all(e["status"] < 400 for e in sent), sent


def test_a_version_the_server_does_not_serve_is_refused_with_what_to_set(sandbox):
    url, _ = sandbox
    ado = AzureDevOpsClient(f"{url}/tfs/Coll2020", PersonalAccessToken("sandbox-pat"))  # 7.1, the default
    with pytest.raises(errors.VersionOutOfRange) as info:
        ado.get_repository(PROJECT, "dbt-onprem")
    assert info.value.supported == "6.0" and not info.value.retryable
    assert "out of range for this server" in str(info.value) and "api_version to 6.0" in str(info.value)
    with pytest.raises(errors.ConfigError, match=r"set api_version: '6.0'"):
        check_server(ado, "Coll2020")


def test_the_cloud_is_hosted_and_server_collections_take_no_entra_token(sandbox):
    url, _ = sandbox
    assert AzureDevOpsClient(f"{url}/fabrikam", PersonalAccessToken("sandbox-pat")).connection_data()[
        "deployment"] == "hosted"

    class Bearer:
        def authorization(self) -> str:
            return "Bearer some-entra-token"

    with pytest.raises(errors.Unauthorized):
        AzureDevOpsClient(f"{url}/tfs/Coll2022", Bearer(), api_version="7.0").connection_data()
