"""The PR sweep's budget: one listing per project, within a share of Azure DevOps' 200 TSTU per five minutes,
the least recently listed first, spread over the round; every Azure DevOps call counted in Redis per
organization over the window, whichever worker made it."""

from __future__ import annotations

import uuid

import pytest
import redis

from bridge.api_calls import ApiCalls
from bridge.ci.sweep import allowance, plan
from bridge.clients.http import CountedTransport, HttpAnswer


@pytest.mark.parametrize(("share", "used", "interval", "expected"), [
    (0.25, {}, 300, 50),                      # one round a window: the whole share
    (0.25, {}, 60, 10),                       # five rounds a window: a fifth each
    (0.25, {"sweep": 45}, 60, 5),             # never past the share within the window
    (0.25, {"sweep": 50}, 60, 0),
    (0.25, {"work": 195}, 60, 5),             # never past the whole budget with the identity's other work
    (0.25, {"work": 230}, 60, 0),
    (0.001, {}, 60, 0),                       # a share smaller than one listing a window
    (1.0, {}, 10, 6),                         # 30 rounds a window: 200 / 30
])
def test_the_allowance_keeps_the_sweep_inside_its_share_and_the_budget(share, used, interval, expected):
    assert allowance(share=share, used=used, interval=interval) == expected


def test_a_round_lists_the_least_recently_listed_projects_first_spread_over_the_interval():
    projects = {(1, "Fabrikam"): [f"p{n}" for n in range(30)], (2, "contoso"): ["c1", "c2"]}
    last = {f"1:p{n}": 1000.0 + n for n in range(30)} | {"1:p7": 10.0}  # p7 waited longest
    round_ = plan(projects, last_listed=last, used={"fabrikam": {"sweep": 0, "work": 3}}, share=0.25, interval=60)
    fabrikam = [x.project_id for x in round_.listings if x.organization_id == 1]
    assert fabrikam == ["p7", "p0", "p1", "p2", "p3", "p4", "p5", "p6", "p8", "p9"]  # 10 a round, oldest first
    assert round_.deferred == {"Fabrikam": 20}
    assert [x.project_id for x in round_.listings if x.organization_id == 2] == ["c1", "c2"]  # never listed: first
    delays = [x.delay for x in round_.listings]
    assert delays == sorted(delays) and delays[0] == 0 and delays[-1] < 60 and len(set(delays)) == 12
    at_once = plan(projects, last_listed=last, used={}, share=0.25, interval=60, spread=False)
    assert {x.delay for x in at_once.listings} == {0.0}


def test_every_project_is_listed_in_turn_however_many_there_are():
    projects = {(1, "big"): [f"p{n}" for n in range(120)]}
    last: dict[str, float] = {}
    seen: list[str] = []
    for clock in range(12):  # twelve rounds of a minute, the sweep's own calls only
        round_ = plan(projects, last_listed=last, used={}, share=0.25, interval=60)
        for x in round_.listings:
            last[f"1:{x.project_id}"] = float(clock)
            seen.append(x.project_id)
    assert len(seen) == 120 and len(set(seen)) == 120  # 10 a round: each once in 12 rounds


@pytest.fixture
def calls(redis_url):
    client = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/7")
    now = [1_000_000.0]
    yield ApiCalls(client, clock=lambda: now[0]), now, client
    client.flushdb()


def test_calls_add_up_per_organization_and_kind_over_five_minutes(calls):
    counter, now, _ = calls
    org = f"org-{uuid.uuid4().hex[:6]}"
    for _ in range(7):  # a call a minute for seven minutes, then a sweep listing
        counter.count(org.upper())
        now[0] += 60
    counter.count(org, kind="sweep", calls=3)
    assert counter.last_window([org]) == {org: {"sweep": 3, "work": 4}}  # minutes 3-7: the three oldest fell out
    assert counter.last_window(["nobody"]) == {"nobody": {"sweep": 0, "work": 0}} and counter.last_window([]) == {}


def test_counting_never_fails_the_work_and_listing_marks_survive(calls):
    counter, now, _ = calls
    counter.mark_listed("1:p")
    assert counter.listed(["1:p", "1:q"]) == {"1:p": now[0]}
    dead = ApiCalls(redis.Redis(port=9, socket_connect_timeout=0.2))
    dead.count("x")  # Redis down: the call is not counted, and nothing raises
    dead.mark_listed("1:p")
    assert dead.last_window(["x"]) == {} and dead.listed(["1:p"]) == {}


def test_a_counted_transport_counts_each_request_it_sends():
    sent, counted = [], []

    class Inner:
        def send(self, method, url, *, params, json, headers, timeout):
            sent.append(url)
            return HttpAnswer(200, {}, b"{}")

    transport = CountedTransport(Inner(), lambda: counted.append(1))
    for n in range(3):
        transport.send("GET", f"https://x/{n}", params=None, json=None, headers={}, timeout=1)
    assert len(sent) == len(counted) == 3
