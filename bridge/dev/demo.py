"""``make demo``: the whole bridge on the embedded default (SQLite, a private Redis, the sandbox) playing
the pull-request stories a newcomer wants to see, with the PRs' statuses shown as they change."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .person import Person
from .sandbox.control import SandboxControl, wait_until
from .stack import (
    ADMIN_TOKEN,
    CI_JOB,
    ENTRA_USER,
    TEARDOWN_JOB,
    DevstackError,
    RunningBridge,
    Stack,
    start_bridge,
)


@dataclass
class Story:
    title: str
    prs: list[int] = field(default_factory=list)
    result: str = "waiting"
    detail: str = ""


def start(workdir: Path, console: Console) -> RunningBridge:
    """Bring up Redis, the sandbox, the database, web, worker and beat; apply the demo configuration."""
    if workdir.exists():
        shutil.rmtree(workdir)
    stack = Stack.create(workdir.resolve())
    console.print(f"[dim]work directory {stack.workdir} (logs in {stack.logs})[/]")
    try:
        running = start_bridge(stack, worker_concurrency=4, run_seconds=2.0, entra=True)
    except BaseException:
        stack.stop()
        raise
    env = running.env
    console.print(f"• Redis      {env['BRIDGE_BROKER_URL']}")
    console.print(f"• sandbox    {running.sandbox.url}  (plays Azure DevOps org 'fabrikam' and dbt Cloud account 1)")
    console.print(f"• database   {env['BRIDGE_DATABASE_URL']} (migrated; {stack.workdir / 'bridge.yaml'} applied)")
    console.print(f"• web        {running.web}  (gunicorn; service hooks POST /webhooks/azure-devops)")
    console.print("• worker + beat (Celery)")
    console.print(f"• console    {running.web}/console — \"Sign in with Microsoft\" signs you in as "
                  f"{ENTRA_USER['upn']} at the sandbox's fake identity platform (or use the local admin token "
                  f"{ADMIN_TOKEN}); then Import a repository")
    return running


def _states(sandbox: SandboxControl, pr: int) -> str:
    data = sandbox.pr(pr)
    latest: dict[int, str] = {}
    for s in data["statuses"]:
        latest[s.get("iterationId", 0)] = s["state"]
    pr_state = data["pr"]["status"] + (" (draft)" if data["pr"]["isDraft"] else "")
    its = ", ".join(f"it{i}: {st}" for i, st in sorted(latest.items())) or "no status"
    return f"{pr_state}: {its}"


def stories(running: RunningBridge) -> list[tuple[Story, Callable[[Story], None]]]:
    sandbox = running.sandbox

    def passes(story: Story) -> None:
        opened = sandbox.open_pr(title="Add orders model")
        pr = opened["pr"]
        story.prs.append(pr)
        wait_until(lambda: sandbox.latest_state(pr, 1) == "pending", what="pending status")
        wait_until(lambda: sandbox.latest_state(pr, 1) == "succeeded", what="succeeded status")
        story.detail = sandbox.statuses(pr)[-1]["description"]

    def superseded(story: Story) -> None:
        opened = sandbox.open_pr(title="Refactor customers", deliver=False)
        pr = opened["pr"]
        story.prs.append(pr)
        sandbox.outcome(sha=opened["head"], seconds=30)
        sandbox.deliver(opened["event_id"])
        wait_until(lambda: sandbox.latest_state(pr, 1) == "pending", what="pending on iteration 1")
        sandbox.act(pr, "push")
        wait_until(lambda: sandbox.latest_state(pr, 1) == "notApplicable", what="iteration 1 notApplicable")
        wait_until(lambda: sandbox.latest_state(pr, 2) == "succeeded", timeout=40, what="iteration 2 succeeded")
        runs = sandbox.runs_for(pr, CI_JOB)
        if runs[0]["status_humanized"] != "Cancelled":
            raise AssertionError(f"the stale run should be cancelled, it is {runs[0]['status_humanized']}")
        story.detail = f"run {runs[0]['id']} cancelled; run {runs[-1]['id']} passed"

    def fails(story: Story) -> None:
        opened = sandbox.open_pr(title="Break revenue", deliver=False)
        pr = opened["pr"]
        story.prs.append(pr)
        sandbox.outcome(sha=opened["head"], outcome="error",
                        message="Database Error in model revenue: column \"amount\" does not exist")
        sandbox.deliver(opened["event_id"])
        wait_until(lambda: sandbox.latest_state(pr, 1) == "failed", timeout=40, what="failed status")
        description = sandbox.statuses(pr)[-1]["description"]
        if "amount" not in description:
            raise AssertionError(f"the failure should say why: {description!r}")
        story.detail = description

    def draft(story: Story) -> None:
        opened = sandbox.open_pr(title="WIP: snapshots", draft=True)
        pr = opened["pr"]
        story.prs.append(pr)
        time.sleep(3)
        if sandbox.statuses(pr) or sandbox.runs_for(pr):
            raise AssertionError("a draft must not be built")
        sandbox.act(pr, "publish")
        wait_until(lambda: sandbox.latest_state(pr, 1) == "succeeded", timeout=40, what="status after publish")
        story.detail = "no run while draft; built once published"

    def abandoned(story: Story) -> None:
        opened = sandbox.open_pr(title="Experiment")
        pr = opened["pr"]
        story.prs.append(pr)
        wait_until(lambda: sandbox.latest_state(pr, 1) == "succeeded", timeout=40, what="CI passes")
        sandbox.act(pr, "abandon")
        teardown = wait_until(lambda: sandbox.runs_for(pr, TEARDOWN_JOB), timeout=30, what="teardown run")
        schema = teardown[0]["trigger"].get("schema_override")
        if schema != f"dbt_cloud_pr_{CI_JOB}_{pr}":
            raise AssertionError(f"teardown should target the PR schema, got {schema!r}")
        story.detail = f"teardown run {teardown[0]['id']} drops {schema}"

    def connected(story: Story) -> None:
        admin = Person(running.web, sandbox.url)
        admin.sign_in_with_token(ADMIN_TOKEN)
        answer = admin.connect_azure_devops()  # console → Connect Azure DevOps → consent at "Microsoft"
        if f"Connected {ENTRA_USER['upn']}" not in answer.text:
            raise AssertionError(f"the connect flow did not finish: {answer.status_code}")
        out = running.stack.run_cli(running.env, "orgs", "identity", "fabrikam", "--kind", "user",
                                    "--user", ENTRA_USER["upn"])
        if out.returncode:
            raise AssertionError(out.stdout + out.stderr)
        before = len(sandbox.exchanges())
        pr = sandbox.open_pr(title="Posted as a connected person")["pr"]
        story.prs.append(pr)
        wait_until(lambda: sandbox.latest_state(pr, 1) == "succeeded", timeout=40, what="status as Ada")
        acted_as = {e["as"] for e in sandbox.exchanges()[before:] if e["service"] == "ado" and f"/{pr}" in e["path"]}
        if acted_as != {f"user:{ENTRA_USER['oid']}"}:
            raise AssertionError(f"Azure DevOps calls should act as Ada, they acted as {acted_as}")
        story.detail = f"{ENTRA_USER['upn']} connected through Entra ID; the bridge acts with her permissions"

    def onboarded(story: Story) -> None:
        sandbox._post("/repos", {"org": "fabrikam", "project": "Data-Platform", "name": "dbt-onboarded"})
        out = running.stack.run_cli({**running.env, "COLUMNS": "200"}, "repos", "setup", "--org", "fabrikam",
                                    "--project", "Data-Platform", "dbt-onboarded", "--dbt-account", "1",
                                    "--create-job", "9", "--defer-to", "8", "--policy")
        if out.returncode:
            raise AssertionError(out.stdout[-2000:] + out.stderr[-2000:])
        opened = sandbox.open_pr(repository="dbt-onboarded", title="First PR after import", deliver=False)
        story.prs.append(opened["pr"])
        sandbox.outcome(sha=opened["head"], seconds=3)
        sandbox.deliver(opened["event_id"])
        completed, blocking = sandbox.complete(opened["pr"])
        if completed:
            raise AssertionError("the branch policy should hold the PR until the dbt run is green")
        wait_until(lambda: sandbox.latest_state(opened["pr"], 1) == "succeeded", timeout=40, what="status")
        if sandbox.complete(opened["pr"]) != (True, []):
            raise AssertionError("a green run should let the PR complete")
        story.detail = (f"bridge repos setup: CI job, 4 service hooks, dbt webhook, policy requiring "
                        f"{blocking[0]}; completion blocked until green")

    return [
        (Story("A PR opens and passes"), passes),
        (Story("A new push mid-run supersedes the old run"), superseded),
        (Story("A PR fails and its status says why"), fails),
        (Story("A draft is skipped until published"), draft),
        (Story("An abandoned PR gets its schema torn down"), abandoned),
        (Story("Azure DevOps connected through Entra ID (OAuth)"), connected),
        (Story("A repository imported with one command; the branch requires CI"), onboarded),
    ]


def _table(sandbox: SandboxControl, items: list[Story]) -> Table:
    table = Table(title="ado-dbt bridge demo: pull requests in the sandbox")
    for col in ("story", "PR", "Azure DevOps shows", "result"):
        table.add_column(col)
    for story in items:
        shown = ""
        for pr in story.prs:
            try:
                shown = _states(sandbox, pr)
            except Exception:
                shown = "?"
        colour = {"passed": "green", "FAILED": "red"}.get(story.result, "yellow")
        table.add_row(story.title, ", ".join(map(str, story.prs)), shown,
                      f"[{colour}]{story.result}[/] {story.detail}")
    return table


def run_demo(*, workdir: Path, once: bool) -> int:
    console = Console()
    console.rule("ado-dbt bridge demo")
    try:
        demo = start(workdir, console)
    except DevstackError as exc:
        console.print(f"[red]could not start the demo:[/] {exc}")
        return 2
    try:
        items = stories(demo)
        done = threading.Event()

        def play() -> None:
            for story, act in items:
                story.result = "running"
                try:
                    act(story)
                    story.result = "passed"
                except Exception as exc:
                    story.result, story.detail = "FAILED", str(exc)
            done.set()

        threading.Thread(target=play, daemon=True).start()
        with Live(_table(demo.sandbox, [s for s, _ in items]), console=console, refresh_per_second=4) as live:
            while not done.wait(0.5):
                live.update(_table(demo.sandbox, [s for s, _ in items]))
            live.update(_table(demo.sandbox, [s for s, _ in items]))
        console.print()
        failed = [s for s, _ in items if s.result != "passed"]
        console.rule("summary")
        console.print(f"{len(items) - len(failed)} of {len(items)} stories passed.")
        if failed:
            console.print(f"[red]failed:[/] {', '.join(s.title for s in failed)}; logs in {demo.stack.logs}")
            return 1
        if not once:
            console.print(f"The stack keeps running: web {demo.web}, sandbox {demo.sandbox.url}. "
                          "Try `bridge status` with the same environment, or press Ctrl-C to stop.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return 0
    finally:
        demo.stack.stop()
