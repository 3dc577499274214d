"""A stored event decodes to the event that was stored, for every real payload of both sources."""

from __future__ import annotations

import pytest

from bridge.deliveries.codec import decode, encode
from bridge.domain import IgnoredEvent
from bridge.errors import PayloadError
from bridge.webhooks import azure_devops, dbt_cloud
from tests.conftest import ADO_FIXTURES, DBT_FIXTURES

# Every fixture the bridge acts on (an ignored event type is stored, but never decoded).
ACTED_ON = [p for p in ADO_FIXTURES if not isinstance(azure_devops.parse(p.read_bytes()), IgnoredEvent)]


def test_most_fixtures_are_acted_on():
    assert len(ACTED_ON) >= len(ADO_FIXTURES) - 2


@pytest.mark.parametrize("path", ACTED_ON, ids=lambda p: p.name)
def test_azure_devops_events_survive_their_row(path):
    event = azure_devops.parse(path.read_bytes())
    assert decode("azure-devops", encode(event)) == event


@pytest.mark.parametrize("path", DBT_FIXTURES, ids=lambda p: p.name)
def test_dbt_cloud_events_survive_their_row(path):
    event = dbt_cloud.parse(path.read_bytes())
    record = encode(event)
    assert isinstance(record["status"], int | None) and decode("dbt-cloud", record) == event


def test_a_row_that_holds_no_event_is_refused_with_why():
    with pytest.raises(PayloadError, match="no event type for source 'gitlab'"):
        decode("gitlab", {})
    with pytest.raises(PayloadError, match="does not decode"):
        decode("azure-devops", {"event_id": "x"})
    with pytest.raises(PayloadError, match="does not decode"):
        decode("azure-devops", {**encode_sample(), "status": "merged-ish"})


def encode_sample() -> dict:
    return encode(azure_devops.parse(next(p for p in ADO_FIXTURES if "created" in p.name).read_bytes()))
