"""What a finished CI run tells its pull request: dbt's run results read once into a ``Summary``, and from it
the status's one line and the summary thread's Markdown.

Pure: no I/O. ``read_run_results`` is the only place that looks inside ``run_results.json`` (any schema
version, through dbt-artifacts-parser). Everything dbt says — names, relations, messages — is untrusted: it is
escaped for Markdown, cut to a few lines each, and the whole comment stays under Azure DevOps' limit.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from ..domain import run_line
from ..errors import BridgeError

COMMENT_LIMIT = 150_000       # Azure DevOps refuses longer comment content
THREAD_PROPERTY = "ado-dbt-bridge.summary"  # marks the bridge's summary thread, valued "job:<CI job id>"
MESSAGE_LINES = 4             # of each failing node's message
MESSAGE_CHARS = 600
LISTED = 50                   # failing nodes listed by name; the rest are counted
FAILED = frozenset({"error", "fail", "runtime error"})
WARNED = frozenset({"warn"})
PASSED = frozenset({"success", "pass"})
WORDS = {"success": "passed", "pass": "passed", "error": "errored", "runtime error": "errored", "fail": "failed",
         "warn": "warned", "skipped": "skipped"}
# Plural forms for the resource types dbt reports; anything else is named as dbt names it.
PLURALS = {"model": "models", "test": "tests", "seed": "seeds", "snapshot": "snapshots", "unit_test": "unit tests",
           "source": "sources", "analysis": "analyses", "operation": "operations"}


class ArtifactError(BridgeError):
    """A run's artifact the bridge could not read (not JSON, not a run_results.json of any known schema)."""


@dataclass(frozen=True)
class NodeResult:
    resource_type: str      # model, test, seed, snapshot, unit_test …
    name: str
    relation: str | None    # the database relation a model built, when dbt reports it
    status: str             # dbt's word: success, error, fail, warn, pass, skipped
    message: str | None

    @property
    def failed(self) -> bool:
        return self.status in FAILED

    @property
    def warned(self) -> bool:
        return self.status in WARNED


@dataclass(frozen=True)
class Summary:
    results: tuple[NodeResult, ...]

    @property
    def counts(self) -> Counter:
        """(resource type, status) -> how many nodes."""
        return Counter((r.resource_type, r.status) for r in self.results)

    @property
    def failures(self) -> list[NodeResult]:
        return [r for r in self.results if r.failed]

    @property
    def warnings(self) -> list[NodeResult]:
        return [r for r in self.results if r.warned]

    @property
    def passed(self) -> bool:
        return not self.failures


def read_run_results(raw: object) -> Summary:
    """A ``run_results.json`` (parsed JSON) as a Summary; ArtifactError when it is not one."""
    if not isinstance(raw, dict):
        raise ArtifactError("run_results.json is not a JSON object")
    # Imported on first use: the parser loads every artifact schema (~1 s, ~50 MB), which a worker or a CLI
    # command that never reads a failed run should not pay at start-up.
    from dbt_artifacts_parser.parser import parse_run_results

    try:
        parsed = parse_run_results(run_results=raw)
    except Exception as exc:  # the parser raises ValueError or pydantic's errors, by schema version
        raise ArtifactError(f"not a run_results.json this bridge can read ({type(exc).__name__})") from None
    results = []
    for result in parsed.results:
        kind, _, rest = str(result.unique_id).partition(".")
        name = rest.split(".")[1] if "." in rest else rest
        status = getattr(result.status, "value", result.status)
        results.append(NodeResult(resource_type=kind, name=name, relation=getattr(result, "relation_name", None),
                                  status=str(status).lower(), message=result.message))
    return Summary(tuple(results))


# -- the status's line -------------------------------------------------------------------------------

def _plural(kind: str, n: int) -> str:
    word = kind.replace("_", " ") if n == 1 else PLURALS.get(kind, kind.replace("_", " ") + "s")
    return f"{n} {word}"


def _tally(nodes: list[NodeResult]) -> str:
    by_kind = Counter(n.resource_type for n in nodes)
    return ", ".join(_plural(kind, n) for kind, n in sorted(by_kind.items(), key=lambda kv: (kv[0] != "model", kv[0])))


def failure_tally(summary: Summary) -> str | None:
    """What failed, counted by kind ("2 models, 1 test"); None when nothing did."""
    return _tally(summary.failures) or None


def _what(summary: Summary) -> str:
    """What failed, or else what ran."""
    if summary.failures:
        return _tally(summary.failures)
    return _tally([r for r in summary.results if r.status in PASSED | WARNED]) or "nothing to build"


def status_line(summary: Summary, *, run_id: int, duration: str | None) -> str:
    """"dbt Cloud CI failed: 2 models, 1 test (run 1234, 4m 12s)" — what failed, or what ran, in one line."""
    return run_line("failed" if summary.failures else "passed", _what(summary), run_id=run_id, duration=duration)


# -- the thread's Markdown ---------------------------------------------------------------------------

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")
# Shapes of credentials a database error may echo back: key=value pairs, bearer/token headers, URL userinfo.
_SECRETS = [re.compile(r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key)(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)"),
            re.compile(r"(?i)\b(bearer|token)(\s+)([A-Za-z0-9._~+/=-]{8,})"),
            re.compile(r"(://[^/\s:@]+:)([^@\s/]+)(@)")]


def escape(text: str) -> str:
    """dbt's words as literal Markdown text: HTML's characters as entities, Markdown's backslashed."""
    html = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN.sub(r"\\\1", html)


def redact(text: str) -> str:
    """Credentials a message may carry, replaced by a marker (a connection error can echo its URL)."""
    text = _SECRETS[0].sub(lambda m: f"{m[1]}{m[2]}[redacted]", text)
    text = _SECRETS[1].sub(lambda m: f"{m[1]}{m[2]}[redacted]", text)
    return _SECRETS[2].sub(lambda m: f"{m[1]}[redacted]{m[3]}", text)


def fenced(text: str, indent: str = "") -> str:
    """``text`` verbatim in a fenced code block whose fence no run of backticks in it can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    body = "\n".join(f"{indent}{line}" for line in text.splitlines())
    return f"{indent}{fence}text\n{body}\n{indent}{fence}"


def _first_lines(message: str | None) -> str:
    lines = [line.rstrip() for line in (message or "").strip().splitlines() if line.strip()][:MESSAGE_LINES]
    text = redact("\n".join(lines))
    return text[:MESSAGE_CHARS] + ("…" if len(text) > MESSAGE_CHARS else "")


def _node_line(node: NodeResult) -> str:
    where = f" → `{node.relation.replace('`', '')}`" if node.relation else ""
    head = f"- **{escape(node.resource_type)}** {escape(node.name)}{where} — {escape(node.status)}"
    message = _first_lines(node.message)
    return f"{head}\n{fenced(message, indent='  ')}" if message else head


@dataclass(frozen=True)
class RunFacts:
    """What the bridge knows of the run beside its artifacts."""

    run_id: int
    commit: str
    duration: str | None
    run_url: str | None = None    # http(s) only; the caller checks


def thread_markdown(summary: Summary, facts: RunFacts) -> str:
    """The summary thread's comment: failures and warnings listed, counts by status, the run's facts."""
    where = f"run {facts.run_id}" + (f", {facts.duration}" if facts.duration else "")
    lines = [f"### dbt Cloud CI {'failed' if summary.failures else 'passed'}", "",
             escape(f"{_what(summary)} ({where})"), ""]
    if summary.failures:
        lines.append(f"**Failed ({len(summary.failures)})**")
        lines += [_node_line(n) for n in summary.failures[:LISTED]]
        if len(summary.failures) > LISTED:
            lines.append(f"- … and {len(summary.failures) - LISTED} more")
        lines.append("")
    if summary.warnings:
        lines.append(f"**Warnings ({len(summary.warnings)})**")
        lines += [_node_line(n) for n in summary.warnings[:LISTED]]
        lines.append("")
    counts: Counter = Counter()
    for (_, status), n in summary.counts.items():
        counts[WORDS.get(status, status)] += n
    if counts:
        lines.append("Results: " + ", ".join(f"{n} {word}" for word, n in sorted(counts.items())))
    link = f"[run {facts.run_id}]({facts.run_url})" if facts.run_url else f"run {facts.run_id}"
    lines.append(f"Commit `{facts.commit[:12]}` · {link}")
    return _capped("\n".join(lines))


def _capped(text: str) -> str:
    if len(text) <= COMMENT_LIMIT:
        return text
    note = "\n\n… (cut: the full results are in dbt Cloud)"
    return text[:COMMENT_LIMIT - len(note)] + note
