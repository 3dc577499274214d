"""``bridge config apply FILE.yaml``: validate the declarative configuration, then upsert it.

A wrong file gets one error that names the key and its line, and nothing is changed. ``${VAR}`` is
replaced from the environment so that secrets stay out of the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .catalog import AdoRepository
from .crypto import SecretBox
from .errors import ApiError, ConfigError
from .models import Connection, DbtAccount, Organization, Repository
from .people import PersonId
from .urls import check_base_url

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# ``${VAR}`` is swapped for a plain token before YAML sees the text, so that the documented
# ``{password: ${VAR}}`` (braces inside a flow mapping) parses; the token is replaced in the parsed values.
_TOKEN = re.compile(r"__bridge_env_([A-Za-z_][A-Za-z0-9_]*)__")


# -- schema -----------------------------------------------------------------------------------------

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
    drafts = fields.Str(load_default="skip", validate=validate.OneOf(["skip", "run"]))
    status = fields.Nested(_Status, load_default=lambda: {"genre": "dbt-cloud", "name": "ci"})
    teardown_job = fields.Int(load_default=None, strict=True, allow_none=True, validate=validate.Range(min=1))


class _File(_Strict):
    azure_devops = fields.Nested(_AzureDevOps, load_default=lambda: {"organizations": []})
    dbt_cloud = fields.Nested(_DbtCloud, load_default=lambda: {"accounts": []})
    repositories = fields.List(fields.Nested(_Repository), load_default=list)

    @validates_schema
    def _references(self, data, **_):
        orgs = [o["name"] for o in data["azure_devops"]["organizations"]]
        accounts = [a["id"] for a in data["dbt_cloud"]["accounts"]]
        errors: dict = {}
        for name in {n for n in orgs if orgs.count(n) > 1}:
            errors.setdefault("azure_devops", {}).setdefault("organizations", {})[orgs.index(name)] = {
                "name": [f"organization {name!r} is listed twice"]}
        users = [(o.get("webhook") or {}).get("username") for o in data["azure_devops"]["organizations"]]
        for i, user in enumerate(users):
            if user and users.count(user) > 1:
                errors.setdefault("azure_devops", {}).setdefault("organizations", {})[i] = {
                    "webhook": {"username": ["webhook usernames must differ between organizations"]}}
        for i, repo in enumerate(data["repositories"]):
            if repo["organization"] not in orgs:
                errors.setdefault("repositories", {})[i] = {
                    "organization": [f"no organization named {repo['organization']!r} under azure_devops"]}
            elif repo["dbt_account"] not in accounts:
                errors.setdefault("repositories", {})[i] = {
                    "dbt_account": [f"no dbt_cloud account with id {repo['dbt_account']}"]}
        if errors:
            raise ValidationError(errors)


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


def _substitute(node: yaml.Node, env: Mapping[str, str], problems: list[str]) -> None:
    if isinstance(node, yaml.ScalarNode) and isinstance(node.value, str) and "__bridge_env_" in node.value:
        def repl(m: re.Match) -> str:
            if m.group(1) not in env:
                problems.append(f"line {node.start_mark.line + 1}: environment variable {m.group(1)} is not set")
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
    """Parse and validate; raises ConfigError naming every bad key with its line."""
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
    problems: list[str] = []
    _substitute(node, env, problems)
    if problems:
        raise ConfigError(f"{source}:\n  " + "\n  ".join(problems))
    try:
        data = _construct(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}: unsupported YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: line {lines.get(())}: the top level must be a mapping")
    try:
        parsed = _File().load(data)
    except ValidationError as exc:
        rows = [f"line {_line_of(lines, p) or '?'}: {_dotted(p)}: {msg}" for p, msg in _flatten(exc.messages)]
        raise ConfigError(f"{source}: invalid configuration\n  " + "\n  ".join(sorted(rows, key=_row_key))) \
            from None
    for i, org in enumerate(parsed["azure_devops"]["organizations"]):
        _check_url(org, lines, ("azure_devops", "organizations", i, "url"), allow_insecure_http, problems)
    for i, acct in enumerate(parsed["dbt_cloud"]["accounts"]):
        _check_url(acct, lines, ("dbt_cloud", "accounts", i, "url"), allow_insecure_http, problems)
    if problems:
        raise ConfigError(f"{source}: invalid configuration\n  " + "\n  ".join(problems))
    return Desired(parsed["azure_devops"]["organizations"], parsed["dbt_cloud"]["accounts"],
                   parsed["repositories"])


def _row_key(row: str) -> int:
    m = re.match(r"line (\d+)", row)
    return int(m.group(1)) if m else 0


def _construct(node: yaml.Node):
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_url(entry: dict, lines: dict, path: tuple, allow_insecure: bool, problems: list[str]) -> None:
    try:
        entry["url"] = check_base_url(entry["url"], allow_insecure_http=allow_insecure, what=_dotted(path))
    except ConfigError as exc:
        problems.append(f"line {_line_of(lines, path)}: {exc}")


# -- apply --------------------------------------------------------------------------------------------

@dataclass
class Change:
    kind: str
    name: str
    action: str  # created | updated | unchanged


RepositoryResolver = Callable[[Organization, dict], AdoRepository]
"""(organization as just updated, repository entry) -> the repository; asks Azure DevOps as the identity the
organization is configured to act as."""


def _set_secret(box: SecretBox, obj, attr: str, value: str | None) -> bool:
    current = getattr(obj, attr)
    if value is None:
        if current is not None:
            setattr(obj, attr, None)
            return True
        return False
    if current is not None and box.decrypt(current) == value:
        return False
    setattr(obj, attr, box.encrypt(value))
    return True


def _set(obj, attr: str, value) -> bool:
    if getattr(obj, attr) == value:
        return False
    setattr(obj, attr, value)
    return True


def apply(session: Session, desired: Desired, box: SecretBox, resolve: RepositoryResolver) -> list[Change]:
    """Upsert organizations, accounts and repositories. Runs inside the caller's transaction: if any step
    fails (a repository Azure DevOps does not know, say) the caller rolls everything back."""
    changes: list[Change] = []
    orgs: dict[str, Organization] = {}
    for entry in desired.organizations:
        org = session.scalar(select(Organization).where(Organization.name == entry["name"]))
        created = org is None
        if created:
            org = Organization(name=entry["name"], url=entry["url"])
            session.add(org)
        webhook = entry.get("webhook") or {}
        identity = entry.get("identity") or {"kind": "pat"}
        person = _person(session, entry["name"], identity) if identity["kind"] == "user" else None
        sp = identity["kind"] == "service_principal"
        changed = [_set(org, "url", entry["url"]), _set_secret(box, org, "pat_enc", entry.get("pat")),
                   _set(org, "webhook_username", webhook.get("username")),
                   _set_secret(box, org, "webhook_password_enc", webhook.get("password")),
                   _set(org, "identity_kind", identity["kind"]),
                   _set(org, "identity_tid", person.tenant_id if person else None),
                   _set(org, "identity_oid", person.object_id if person else None),
                   _set(org, "sp_tenant_id", identity.get("tenant") if sp else None),
                   _set(org, "sp_client_id", identity.get("client_id")),
                   _set(org, "api_version", entry["api_version"]), _set(org, "ca_bundle", entry.get("ca_bundle")),
                   _set_secret(box, org, "sp_secret_enc", identity.get("client_secret"))]
        orgs[entry["name"]] = org
        changes.append(Change("organization", entry["name"], _action(created, any(changed))))
    session.flush()

    for entry in desired.accounts:
        account = session.get(DbtAccount, entry["id"])
        created = account is None
        if created:
            account = DbtAccount(id=entry["id"], url=entry["url"])
            session.add(account)
        changed = [_set(account, "url", entry["url"]),
                   _set_secret(box, account, "api_token_enc", entry.get("api_token")),
                   _set_secret(box, account, "webhook_secret_enc", entry.get("webhook_secret"))]
        changes.append(Change("dbt account", str(entry["id"]), _action(created, any(changed))))
    session.flush()

    for entry in desired.repositories:
        org = orgs[entry["organization"]]
        try:
            info = resolve(org, entry)
        except ApiError as exc:
            raise ConfigError(f"repository {entry['organization']}/{entry['project']}/{entry['repository']}: "
                              f"Azure DevOps could not resolve it: {exc}") from None
        status = entry.get("status") or {}
        _, created, changed = link_repository(session, org.id, info, {
            "dbt_account_id": entry["dbt_account"], "ci_job_id": entry["ci_job"],
            "teardown_job_id": entry.get("teardown_job"),
            "target_branches": list(entry.get("target_branches") or []), "drafts": entry["drafts"],
            "status_genre": status.get("genre", "dbt-cloud"), "status_name": status.get("name", "ci")})
        changes.append(Change("repository", f"{entry['organization']}/{info.project_name}/{info.name}",
                              _action(created, any(changed))))
    session.flush()
    return changes


def _person(session: Session, organization: str, identity: dict) -> PersonId:
    """The connected person an organization acts as: by object id and tenant, or by a sign-in name that
    exactly one connection has now (what is kept is the tenant and object id)."""
    if identity.get("object_id"):
        return PersonId(identity["tenant"], identity["object_id"])
    found = session.execute(select(Connection.oid, Connection.tenant_id).where(
        func.lower(Connection.upn) == identity["upn"].lower())).all()
    if len(found) != 1:
        why = "has not connected yet (connect in the console first)" if not found else \
            f"names {len(found)} connections in different tenants"
        raise ConfigError(f"organization {organization}: identity user {identity['upn']!r} {why}; or give "
                          "object_id and tenant instead of upn")
    return PersonId(found[0][1], found[0][0])


def link_repository(session: Session, organization_id: int, info: AdoRepository,
                    settings: dict) -> tuple[Repository, bool, list[str]]:
    """Create or update the bridge's record of a repository (``info`` as Azure DevOps describes it, ``settings``
    its CI columns); returns (row, created, names of the columns that changed). Shared by the configuration file
    and onboarding, so both link a repository the same way."""
    row = session.scalar(select(Repository).where(Repository.organization_id == organization_id,
                                                  Repository.ado_repository_id == info.id))
    created = row is None
    if created:
        row = Repository(organization_id=organization_id, ado_repository_id=info.id)
        session.add(row)
    wanted = {"ado_project_id": info.project_id, "ado_project_name": info.project_name, "name": info.name,
              **settings}
    changed = [column for column, value in wanted.items() if _set(row, column, value)]
    session.flush()
    return row, created, changed


def _action(created: bool, changed: bool) -> str:
    return "created" if created else ("updated" if changed else "unchanged")


def read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None

