"""The configuration file's shape, and reading it: every problem of a file in one round, each naming its line
and key in the file's own terms ("drafts must be skip or run", "did you mean repository?").

``${VAR}`` is replaced from the environment so that secrets stay out of the file.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from ..errors import ConfigError
from ..people import PersonId
from ..urls import check_base_url

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# ``${VAR}`` is swapped for a plain token before YAML sees the text, so that the documented
# ``{password: ${VAR}}`` (braces inside a flow mapping) parses; the token is replaced in the parsed values.
_TOKEN = re.compile(r"__bridge_env_([A-Za-z_][A-Za-z0-9_]*)__")


# -- schema -----------------------------------------------------------------------------------------

_DRAFTS = "must be skip or run"


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class _Webhook(_Strict):
    username = fields.Str(required=True, validate=[validate.Length(1, 256), validate.Regexp(r"^\S+$")])
    password = fields.Str(required=True, validate=validate.Length(16, 256,
                                                                 error="must be 16 to 256 characters long"))


class _Identity(_Strict):
    """Who workers act as in the organization (default: the PAT)."""

    kind = fields.Str(required=True, validate=validate.OneOf(["pat", "user", "service_principal"]))
    object_id = fields.Str(load_default=None)       # user: the connected person's object id (see /console) …
    upn = fields.Str(load_default=None)             # … or their sign-in name, looked up once when applied
    tenant = fields.Str(load_default=None)          # user: their tenant; service_principal: the organization's
    client_id = fields.Str(load_default=None)
    client_secret = fields.Str(load_default=None)

    @validates_schema
    def _complete(self, data, **_):
        if data["kind"] == "user" and not (data.get("upn") or (data.get("object_id") and data.get("tenant"))):
            raise ValidationError({"object_id": ["required, with tenant, when kind is user (or give upn)"]})
        if data["kind"] == "user" and data.get("object_id") and \
                PersonId.parse(f"{data['object_id']}@{data.get('tenant') or ''}") is None:
            raise ValidationError({"object_id": ["object_id and tenant are GUIDs"]})
        if data["kind"] == "service_principal":
            missing = [k for k in ("tenant", "client_id", "client_secret") if not data.get(k)]
            if missing:
                raise ValidationError({k: ["required when kind is service_principal"] for k in missing})


class _Organization(_Strict):
    name = fields.Str(required=True, validate=validate.Length(1, 200))
    url = fields.Str(required=True)   # https://dev.azure.com/org, or a Server collection https://tfs.x/tfs/Coll
    pat = fields.Str(load_default=None, validate=validate.Length(min=1))
    webhook = fields.Nested(_Webhook, load_default=None)
    identity = fields.Nested(_Identity, load_default=None)
    api_version = fields.Str(load_default="7.1", validate=validate.OneOf(
        ["7.1", "7.0", "6.0"], error="must be 7.1 (Azure DevOps Services), 7.0 (Server 2022) or 6.0 (Server 2020)"))
    ca_bundle = fields.Str(load_default=None, validate=validate.Length(1, 500))  # a PEM file to trust (Server)

    @validates_schema
    def _pat_for_pat(self, data, **_):
        identity = data.get("identity")
        if identity is not None and identity["kind"] == "pat" and not data.get("pat"):
            raise ValidationError({"pat": ["required when identity.kind is pat"]})
        if identity is not None and identity["kind"] != "pat" and data.get("api_version", "7.1") != "7.1":
            raise ValidationError({"identity": [f"Azure DevOps Server (api_version {data['api_version']}) has no "
                                                "Microsoft Entra ID: use kind pat"]})
        if data.get("ca_bundle") and not Path(data["ca_bundle"]).is_file():
            raise ValidationError({"ca_bundle": [f"{data['ca_bundle']} is not a readable file"]})


class _AzureDevOps(_Strict):
    organizations = fields.List(fields.Nested(_Organization), load_default=list)


class _DbtAccount(_Strict):
    id = fields.Int(required=True, strict=True, validate=validate.Range(min=1))
    url = fields.Str(required=True)
    api_token = fields.Str(load_default=None, validate=validate.Length(min=1))
    webhook_secret = fields.Str(load_default=None, validate=validate.Length(min=1))


class _DbtCloud(_Strict):
    accounts = fields.List(fields.Nested(_DbtAccount), load_default=list)


class _Status(_Strict):
    genre = fields.Str(load_default="dbt-cloud", validate=validate.Length(1, 200))
    name = fields.Str(load_default="ci", validate=validate.Length(1, 200))


class _Repository(_Strict):
    organization = fields.Str(required=True)
    project = fields.Str(required=True, validate=validate.Length(min=1))
    repository = fields.Str(required=True, validate=validate.Length(min=1))
    dbt_account = fields.Int(required=True, strict=True)
    ci_job = fields.Int(required=True, strict=True, validate=validate.Range(min=1))
    target_branches = fields.List(fields.Str(validate=validate.Length(min=1)), load_default=list,
                                  allow_none=True)
    drafts = fields.Str(load_default="skip", validate=validate.OneOf(["skip", "run"], error=_DRAFTS),
                        error_messages={"invalid": _DRAFTS})  # `drafts: yes` is a YAML boolean
    status = fields.Nested(_Status, load_default=lambda: {"genre": "dbt-cloud", "name": "ci"})
    teardown_job = fields.Int(load_default=None, strict=True, allow_none=True, validate=validate.Range(min=1))


class _File(_Strict):
    azure_devops = fields.Nested(_AzureDevOps, load_default=lambda: {"organizations": []})
    dbt_cloud = fields.Nested(_DbtCloud, load_default=lambda: {"accounts": []})
    repositories = fields.List(fields.Nested(_Repository), load_default=list)


# -- YAML with line numbers and ${VAR} ------------------------------------------------------------------

def _lines(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict:
    """Map each key path (strings and list indexes) to its 1-based line in the file."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, key.value)
            out[child] = key.start_mark.line + 1
            _lines(value, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*path, i), out)
    return out


def _substitute(node: yaml.Node, env: Mapping[str, str], problems: list[tuple[int, str]]) -> None:
    if isinstance(node, yaml.ScalarNode) and isinstance(node.value, str) and "__bridge_env_" in node.value:
        def repl(m: re.Match) -> str:
            if m.group(1) not in env:
                line = node.start_mark.line + 1
                problems.append((line, f"line {line}: environment variable {m.group(1)} is not set"))
                return ""
            return env[m.group(1)]
        node.value = _TOKEN.sub(repl, node.value)
        if node.tag == "tag:yaml.org,2002:int" or not node.style:
            node.style = '"'  # a substituted value stays a string unless the schema says otherwise
            node.tag = "tag:yaml.org,2002:str"
    elif isinstance(node, yaml.MappingNode):
        for _, value in node.value:
            _substitute(value, env, problems)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _substitute(item, env, problems)


def _flatten(messages, path: tuple = ()) -> list[tuple[tuple, str]]:
    if isinstance(messages, dict):
        out = []
        for key, value in messages.items():
            out.extend(_flatten(value, (*path, key)))
        return out
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [(path, "; ".join(messages))]
    if isinstance(messages, list):
        return [item for m in messages for item in _flatten(m, path)]
    return [(path, str(messages))]


def _dotted(path: tuple) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(file)"


def _line_of(lines: dict, path: tuple) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


@dataclass
class Desired:
    organizations: list[dict] = field(default_factory=list)
    accounts: list[dict] = field(default_factory=list)
    repositories: list[dict] = field(default_factory=list)


def load(text: str, *, env: Mapping[str, str] | None = None, source: str = "config",
         allow_insecure_http: bool = False) -> Desired:
    """Parse and validate; raises one ConfigError listing every problem, by line, with its key."""
    env = os.environ if env is None else env
    try:
        node = yaml.compose(_VAR.sub(r"__bridge_env_\1__", text), Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if node is None:
        raise ConfigError(f"{source}: the file is empty")
    lines = _lines(node)
    problems: list[tuple[int, str]] = []  # (line, the problem as shown)
    _substitute(node, env, problems)
    try:
        data = _construct(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}: unsupported YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: line {lines.get(())}: the top level must be a mapping")
    unset_lines = {line for line, _ in problems}
    try:
        parsed = _File().load(data)
    except ValidationError as exc:
        parsed = None
        for raw_path, raw_message in _flatten(exc.messages):
            path, message = _in_the_files_terms(raw_path, raw_message)
            line = _line_of(lines, path) or 0
            if line not in unset_lines:  # a value left empty by an unset variable: that line says so already
                problems.append((line, f"line {line or '?'}: {_dotted(path)}: {message}"))
    problems += [(line, f"line {line}: {message}") for line, message in _cross_checks(data, lines, allow_insecure_http)]
    if problems:
        rows = sorted(dict.fromkeys(row for _, row in sorted(problems, key=lambda p: p[0])), key=_row_key)
        raise ConfigError(f"{source}: invalid configuration\n  " + "\n  ".join(rows))
    assert parsed is not None
    for kind, section in (("azure_devops", "organizations"), ("dbt_cloud", "accounts")):
        for entry in parsed[kind][section]:
            entry["url"] = entry["url"].rstrip("/")
    return Desired(parsed["azure_devops"]["organizations"], parsed["dbt_cloud"]["accounts"],
                   parsed["repositories"])


_PLAIN = {
    "Missing data for required field.": "is required",
    "Not a valid integer.": "must be a whole number",
    "Not a valid string.": "must be text",
    "Not a valid list.": "must be a list",
    "Not a valid mapping type.": "must be a mapping",
    "Invalid input type.": "must be a mapping",
    "Field may not be null.": "must not be empty",
}


def _in_the_files_terms(path: tuple, message: str) -> tuple[tuple, str]:
    """marshmallow's words for a problem as the file's reader thinks of it (no ``_schema``, "did you mean")."""
    if path and path[-1] == "_schema":
        path = path[:-1]
    if message == "Unknown field.":
        given, known = str(path[-1]), _keys_at(path[:-1])
        close = [k for k in known if k.startswith(given) or given.startswith(k)] or \
            difflib.get_close_matches(given, known, n=1, cutoff=0.6)
        return path, "is not a key here" + (f" (did you mean {close[0]}?)" if close else
                                            f" (keys here: {', '.join(sorted(_keys_at(path[:-1])))})")
    if (m := re.fullmatch(r"Must be greater than or equal to (\d+)\.", message)):
        return path, f"must be {m.group(1)} or more"
    if (m := re.fullmatch(r"Length must be between (\d+) and (\d+)\.", message)):
        return path, f"must be {m.group(1)} to {m.group(2)} characters long"
    if (m := re.fullmatch(r"Shorter than minimum length (\d+)\.", message)):
        return path, "must not be empty" if m.group(1) == "1" else f"must be at least {m.group(1)} characters long"
    if (m := re.fullmatch(r"Must be one of: (.*)\.", message)):
        return path, "must be " + " or ".join(m.group(1).split(", "))
    return path, _PLAIN.get(message, message)


def _keys_at(path: tuple) -> list[str]:
    """The keys the schema allows in the mapping at ``path``."""
    schema: Schema = _File()
    for part in path:
        if isinstance(part, int):
            continue
        found = schema.fields.get(part)
        if isinstance(found, fields.List):
            found = found.inner
        if not isinstance(found, fields.Nested):
            return []
        schema = found.schema
    return list(schema.fields)


def _cross_checks(data: dict, lines: dict, allow_insecure: bool) -> list[tuple[int, str]]:
    """What no single entry shows: URLs, names listed twice, references to what the file does not declare."""
    out: list[tuple[int, str]] = []

    def entries(*path: str) -> list[tuple[tuple, dict]]:
        node = data
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        return [((*path, i), e) for i, e in enumerate(node)] if isinstance(node, list) else []

    orgs, accounts = entries("azure_devops", "organizations"), entries("dbt_cloud", "accounts")
    for path, entry in [*orgs, *accounts]:
        if isinstance(entry, dict) and isinstance(entry.get("url"), str):
            try:
                check_base_url(entry["url"], allow_insecure_http=allow_insecure, what=_dotted((*path, "url")))
            except ConfigError as exc:
                out.append((_line_of(lines, (*path, "url")), str(exc)))

    def twice(items: list[tuple[tuple, object]], what: str) -> None:
        first: dict = {}
        for path, value in items:
            if value is None:
                continue
            if value in first:
                out.append((_line_of(lines, path),
                            f"{_dotted(path)}: {what} is listed twice (first at line {first[value]}); keep one entry"))
            else:
                first[value] = _line_of(lines, path)

    def field_of(entry, *keys):
        for k in keys:
            entry = entry.get(k) if isinstance(entry, dict) else None
        return entry.lower() if isinstance(entry, str) else entry

    twice([(p, field_of(e, "name")) for p, e in orgs], "organization")
    twice([(p, field_of(e, "webhook", "username")) for p, e in orgs], "webhook username")
    twice([(p, field_of(e, "id")) for p, e in accounts], "dbt_cloud account")
    repos = entries("repositories")
    keys = [(p, tuple(field_of(e, k) for k in ("organization", "project", "repository"))) for p, e in repos]
    twice([(p, k if None not in k else None) for p, k in keys], "repository")

    names = {field_of(e, "name") for _, e in orgs}
    ids = {field_of(e, "id") for _, e in accounts}
    if not all(isinstance(i, int) for i in ids):
        ids = None  # an account id is wrong already: references to it would only repeat that
    for path, entry in repos:
        org, account = field_of(entry, "organization"), field_of(entry, "dbt_account")
        if isinstance(org, str) and org not in names:
            close = difflib.get_close_matches(org, [n for n in names if isinstance(n, str)], n=1)
            out.append((_line_of(lines, (*path, "organization")),
                        f"{_dotted((*path, 'organization'))}: no organization named {entry['organization']!r} under "
                        "azure_devops" + (f" (did you mean {close[0]}?)" if close else "")))
        if isinstance(account, int) and ids is not None and account not in ids:
            out.append((_line_of(lines, (*path, "dbt_account")),
                        f"{_dotted((*path, 'dbt_account'))}: no dbt_cloud account with id {account}"))
    return out


def _row_key(row: str) -> int:
    m = re.match(r"line (\d+)", row)
    return int(m.group(1)) if m else 0


def _construct(node: yaml.Node):
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None

