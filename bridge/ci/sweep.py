"""The PR sweep's plan: which projects to list this round, and when, within Azure DevOps' rate limit. Pure.

The sweep is the safety net for deliveries that never came: one listing per project (the active pull
requests of all its repositories, not one call a repository). Azure DevOps allows each identity 200 TSTUs
per sliding five minutes; the sweep may spend a configured share of that (a listing counted as one), spread
over the window's rounds, and never what the identity's other work already spent. Within an organization's
allowance the projects listed longest ago go first, so with more projects than one round allows, each is
listed in turn; a round's listings are spread evenly over its interval instead of sent at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..domain import RATE_LIMIT_TSTU as BUDGET_PER_WINDOW
from ..domain import RATE_LIMIT_WINDOW_SECONDS as WINDOW_SECONDS


@dataclass(frozen=True)
class Listing:
    organization_id: int
    organization: str
    project_id: str
    delay: float  # seconds after the round starts


@dataclass(frozen=True)
class Round:
    listings: tuple[Listing, ...]
    deferred: dict[str, int]  # organization → projects left for a later round (the budget is spent)


def allowance(*, share: float, used: Mapping[str, int], interval: float) -> int:
    """Listings one organization's sweep may make this round: its share of the window spread over the
    window's rounds, never past that share in the window, never past the whole budget with the rest of what
    the identity did (``used``: calls in the window by kind, ``sweep`` and ``work``)."""
    per_window = int(BUDGET_PER_WINDOW * share)
    rounds = max(1.0, WINDOW_SECONDS / max(interval, 1.0))
    per_round = max(1, int(per_window / rounds)) if per_window else 0
    left = min(per_window - used.get("sweep", 0), BUDGET_PER_WINDOW - sum(used.values()))
    return max(0, min(per_round, left))


def plan(projects: Mapping[tuple[int, str], list[str]], *, last_listed: Mapping[str, float],
         used: Mapping[str, Mapping[str, int]], share: float, interval: float, spread: bool = True) -> Round:
    """``projects``: (organization id, name) → its projects' ids; ``last_listed``: ``"org_id:project_id"`` →
    when it was last listed (missing: never); ``used``: organization name (lower case) → calls in the window.
    ``spread=False`` (a person asked for a sweep now): every allowed listing at once."""
    chosen: list[tuple[int, str, str]] = []
    deferred: dict[str, int] = {}
    for (organization_id, organization), ids in sorted(projects.items()):
        room = allowance(share=share, used=used.get(organization.lower(), {}), interval=interval)
        oldest_first = sorted(set(ids), key=lambda p: (last_listed.get(f"{organization_id}:{p}", float("-inf")), p))
        chosen += [(organization_id, organization, p) for p in oldest_first[:room]]
        if len(oldest_first) > room:
            deferred[organization] = len(oldest_first) - room
    step = interval / len(chosen) if spread and chosen else 0.0
    return Round(tuple(Listing(org_id, org, project, round(n * step, 3))
                       for n, (org_id, org, project) in enumerate(chosen)), deferred)
