"""The bridge's Azure DevOps client and the sandbox agree on comment threads (checked against the official spec
by test_zz_contract): one thread found again by its properties, its comment edited in place, resolved, replied to."""

from __future__ import annotations

from bridge.clients.azure_devops import AzureDevOpsClient, PersonalAccessToken


def test_a_thread_is_found_by_its_properties_edited_in_place_resolved_and_replied_to(bridge):
    sb = bridge.sandbox
    pr = sb.open_pr(deliver=False)["pr"]
    shown = sb.pr(pr)["pr"]
    project, repository = shown["repository"]["project"]["id"], shown["repository"]["id"]
    ado = AzureDevOpsClient(f"{sb.url}/fabrikam", PersonalAccessToken("sandbox-pat"))
    key = {"ado-dbt-bridge.summary": "ci"}
    made = ado.create_thread(project, repository, pr, content="first run: failed", properties=key)
    ado.create_thread(project, repository, pr, content="a person's comment")
    [found] = [t for t in ado.list_threads(project, repository, pr)
               if t.properties.get("ado-dbt-bridge.summary") == "ci"]
    assert (found.id, found.status, found.first_comment_id) == (made.id, "active", 1)
    ado.edit_comment(project, repository, pr, thread_id=found.id, comment_id=found.first_comment_id,
                     content="second run: passed")
    ado.set_thread_status(project, repository, pr, thread_id=found.id, status="fixed")
    reply = ado.reply(project, repository, pr, thread_id=found.id, content="noted")
    again = {t.id: t for t in ado.list_threads(project, repository, pr)}[found.id]
    assert (again.first_comment, again.status, again.properties) == ("second run: passed", "fixed", key)
    assert reply == 2 and len(sb.pr(pr)["threads"]) == 2  # edited in place: no new thread
