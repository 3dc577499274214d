"""Console pages that answer "what happened to this pull request, and why": the overview, pull requests and
their timelines, a repository's health, deliveries and their replay. They read ``bridge.history.read`` (as
the CLI does) with the signed-in person as its viewer, so a non-admin asking for something by id that is
not theirs gets the same 404 as for something that does not exist. Replaying is for admins, from a
CSRF-checked POST that asks for confirmation first.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, redirect, request, url_for

from ..deliveries.states import DeliveryState
from ..deliveries.store import DeliveryStore, NotSent, Selection
from ..history import read
from ..history.charts import daily_bars
from ..models import utcnow
from .pages import admins_only, check_csrf, is_admin, page, person, signed_in, subject
from .services import services

bp = Blueprint("history", __name__)

REPLAYABLE = (DeliveryState.FAILED.value, DeliveryState.BLOCKED.value)
SINCE = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
PAGE_SIZE = 50
MAX_REPLAY = 500  # ids one replay may name


def viewer() -> read.Viewer:
    return read.Viewer(admin=is_admin(), person=person())


@bp.get("/console/overview")
@signed_in
def overview():
    with services().db.session() as s:
        shown = read.overview(s, viewer())
    charts = {r.id: daily_bars(r.days) for r in shown.repositories}
    return page("overview", "overview.html", overview=shown, charts=charts)


@bp.get("/console/prs")
@signed_in
def pull_requests():
    search = request.args.get("q", "")[:200]
    with services().db.session() as s:
        rows = read.find_pull_requests(s, viewer(), search, limit=PAGE_SIZE)
    return page("pull requests", "prs.html", rows=rows, search=search)


@bp.get("/console/repositories/<id:repository_id>/prs/<id:pull_request_id>")
@signed_in
def pull_request(repository_id: int, pull_request_id: int):
    with services().db.session() as s:
        shown = read.pull_request(s, viewer(), repository_id, pull_request_id)
    if shown is None:
        abort(404)
    return page(f"PR {pull_request_id}", "pr.html", shown=shown, pr=shown.pull_request)


@bp.get("/console/repositories/<id:repository_id>")
@signed_in
def repository(repository_id: int):
    with services().db.session() as s:
        shown = read.repository_page(s, viewer(), repository_id)
    if shown is None:
        abort(404)
    return page(shown.name, "repository.html", repo=shown)


def _filter(s) -> tuple[read.DeliveryFilter | None, dict]:
    """The deliveries page's filters from its query string; a value that is not one of the choices is
    dropped (a bookmarked link from an older version still shows a page). The repository is a linked one's
    id or its ORGANIZATION/PROJECT/REPOSITORY; None when it names none the viewer may see."""
    args = request.args
    states = tuple(s for s in args.getlist("state") if s in {d.value for d in DeliveryState})
    source = args.get("source") if args.get("source") in ("azure-devops", "dbt-cloud") else None
    repo = args.get("repo", "").strip()[:400]
    since = args.get("since") if args.get("since") in SINCE else None
    before = args.get("before", "")
    repository_id = None
    if repo.isascii() and repo.isdigit() and len(repo) < 10:
        found = read.repository(s, viewer(), int(repo))
        repo = read.full_name(found) if found else repo
        repository_id = found.id if found else -1
    elif repo:
        found = read.repository_named(s, viewer(), repo)
        repository_id = found.id if found else -1
    chosen = {"states": states, "source": source, "repo": repo, "since": since,
              "unknown_repo": repository_id == -1}
    if repository_id == -1:
        return None, chosen
    return read.DeliveryFilter(
        states=states, source=source, repository_id=repository_id,
        since=utcnow() - SINCE[since] if since else None,
        before_id=int(before) if before.isdigit() and len(before) < 19 else None), chosen


@bp.get("/console/deliveries")
@signed_in
def deliveries():
    with services().db.session() as s:
        where, chosen = _filter(s)
        rows = read.deliveries(s, viewer(), where, limit=PAGE_SIZE) if where is not None else []
    more = None
    if len(rows) == PAGE_SIZE:  # the same filters, older rows
        more = url_for("history.deliveries", state=list(chosen["states"]), before=rows[-1].id,
                       **{k: v for k in ("source", "repo", "since") if (v := chosen[k])})
    return page("deliveries", "deliveries.html", rows=rows, chosen=chosen, more=more,
                states=[d.value for d in DeliveryState], replayable=REPLAYABLE, admin=is_admin(),
                message=request.args.get("message", "")[:300])


@bp.get("/console/deliveries/<id:delivery_id>")
@signed_in
def delivery(delivery_id: int):
    with services().db.session() as s:
        shown = read.delivery(s, viewer(), delivery_id)
    if shown is None:
        abort(404)
    return page(f"delivery {delivery_id}", "delivery.html", shown=shown, d=shown.row, admin=is_admin(),
                replayable=shown.row.state in REPLAYABLE, message=request.args.get("message", "")[:300])


@bp.post("/console/deliveries/replay")
@admins_only
def replay():
    check_csrf()
    ids = sorted({int(i) for i in request.form.getlist("id") if i.isascii() and i.isdigit() and len(i) < 19})
    if not ids:
        return page("replay", message="Choose the deliveries to replay first.", error=True, status=400)
    if len(ids) > MAX_REPLAY:
        return page("replay", message=f"At most {MAX_REPLAY} deliveries at a time.", error=True, status=400)
    if request.form.get("confirmed") != "1":
        return page("replay", "replay.html", ids=ids, back=url_for("history.deliveries"))
    store = DeliveryStore(services().db)
    try:  # claimed, recorded and sent in one transaction: if the broker refuses, nothing changes
        sent = store.drain(services().dispatcher.process_deliveries,
                           Selection(states=frozenset(DeliveryState(s) for s in REPLAYABLE), ids=tuple(ids)),
                           replayed_by=subject())
    except NotSent:
        return page("replay", message="The workers cannot be reached (the broker is down): nothing was replayed; "
                                      "try again once it answers.", error=True, status=503)
    skipped = len(ids) - sent
    message = f"{sent} of {len(ids)} deliveries sent to the workers again." + (
        f" {skipped} were not failed or blocked any more, so they were left as they are." if skipped else "")
    if len(ids) == 1:
        return redirect(url_for("history.delivery", delivery_id=ids[0], message=message))
    return redirect(url_for("history.deliveries", message=message))
