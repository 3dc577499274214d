"""A run record inserted whole (``whole_run``) is updated later without a read: every column stays loaded."""

from __future__ import annotations

from sqlalchemy import event, inspect, text

from bridge.ci.records import apply_run, recorded, whole_run
from bridge.db import Database, upgrade
from bridge.domain import DbtRun, RunStatus


def test_a_run_inserted_whole_is_updated_without_a_read(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    upgrade(url)
    db = Database(url)
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda _c, _cur, sql, *_: statements.append(sql.split()[0]))
    with db.session() as s:
        s.execute(text("PRAGMA foreign_keys=OFF"))  # the run alone: no pull request record is needed here
        run = whole_run(pull_request_ref=1, kind="ci", commit="abc123", iteration_id=1, dbt_account_id=7,
                        dbt_job_id=42)
        s.add(run)
        s.flush()
    assert inspect(run).unloaded == {"pull_request"}  # every column is known after the INSERT

    statements.clear()
    with db.session() as s:
        s.add(run)
        run.dbt_run_id = 9001
        apply_run(run, DbtRun(run_id=9001, status=RunStatus.QUEUED))
        snapshot = recorded(run)
    assert statements == ["UPDATE"]
    assert (snapshot.dbt_run_id, snapshot.status, snapshot.commit) == (9001, RunStatus.QUEUED, "abc123")
    with db.session() as s:
        stored = s.execute(text("SELECT dbt_run_id, status, start_error FROM ci_runs")).one()
    assert tuple(stored) == (9001, int(RunStatus.QUEUED), None)
    db.engine.dispose()
