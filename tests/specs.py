"""Validate HTTP exchanges against the official specs in ../shared/specs (test helper).

Azure DevOps: Swagger 2.0 (UTF-8 with BOM). Its list operations are typed as bare arrays while the
service wraps them as ``{"count", "value"}`` (VssJsonCollectionWrapper): each item of ``value`` is
validated. dbt Cloud: OpenAPI 3.0.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4, DRAFT7

SHARED = Path(__file__).resolve().parents[2] / "shared"
SPECS = SHARED / "specs"

ADO_SPEC_FILES = ["git/7.1/git.json", "core/7.1/core.json", "hooks/7.1/serviceHooks.json",
                  "profile/7.1/profile.json", "account/7.1/accounts.json", "policy/7.1/policy.json",
                  "security/7.1/security.json"]
DBT_SPEC_FILES = ["openapi-v2.yaml", "openapi-v3.yaml"]
# The sandbox serves app.vssps.visualstudio.com (profiles, accounts) under this prefix.
VSSPS_PREFIX = "/vssps"
# Azure DevOps Server collections are served under this virtual directory; a collection stands where an
# organization does, and their exchanges are checked against the same (7.1) shapes.
SERVER_PREFIX = "/tfs"
# Calls the bridge makes that no official spec describes (reference/azure_devops.md: documented only by use);
# their answers are checked for the fields the bridge reads.
OUTSIDE_THE_SPECS = {("ado", "GET", re.compile(r"^/[^/]+/_apis/connectionData$")): ("deploymentType", "instanceId")}


@dataclass(frozen=True)
class Operation:
    service: str
    template: str
    method: str
    op: dict
    uri: str
    spec: dict


def _rewrite_refs(node, uri: str):
    if isinstance(node, dict):
        return {k: (f"{uri}{v}" if k == "$ref" and isinstance(v, str) and v.startswith("#") else
                    _rewrite_refs(v, uri)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(v, uri) for v in node]
    return node


@cache
def _specs() -> tuple[list[Operation], Registry]:
    ops: list[Operation] = []
    registry = Registry()
    for i, rel in enumerate(ADO_SPEC_FILES):
        path = SPECS / "azure_devops" / rel
        spec = json.loads(path.read_text(encoding="utf-8-sig"))
        uri = f"urn:ado-{i}"
        registry = registry.with_resource(uri, Resource.from_contents(spec, default_specification=DRAFT4))
        for template, methods in spec["paths"].items():
            for method, op in methods.items():
                ops.append(Operation("ado", template, method.upper(), op, uri, spec))
    for rel in DBT_SPEC_FILES:
        spec = yaml.safe_load((SPECS / "dbt_cloud" / rel).read_text())
        uri = f"urn:dbt-{rel}"
        registry = registry.with_resource(uri, Resource.from_contents(spec, default_specification=DRAFT7))
        for template, methods in spec["paths"].items():
            for method, op in methods.items():
                if method.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                    ops.append(Operation("dbt", template, method.upper(), op, uri, spec))
    return ops, registry


def _pattern(template: str) -> re.Pattern:
    parts = re.split(r"(\{[^}]+\})", template)
    regex = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{regex}$", re.IGNORECASE)


def find_operation(service: str, method: str, path: str) -> Operation | None:
    ops, _ = _specs()
    matches = [op for op in ops if op.service == service and op.method == method and _pattern(op.template).match(path)]
    # Prefer the most literal template (fewest parameters).
    matches.sort(key=lambda op: op.template.count("{"))
    return matches[0] if matches else None


def _params(op: Operation) -> list[dict]:
    params = []
    for param in op.op.get("parameters", []):
        if "$ref" in param:
            name = param["$ref"].split("/")[-1]
            section = op.spec["parameters"] if op.service == "ado" else op.spec["components"]["parameters"]
            param = section[name]  # noqa: PLW2901 - resolve the reference in place
        params.append(param)
    return params


def _validator(op: Operation, schema: dict):
    _, registry = _specs()
    cls = jsonschema.Draft4Validator if op.service == "ado" else jsonschema.Draft7Validator
    return cls(_rewrite_refs(copy.deepcopy(schema), op.uri), registry=registry)


def _errors(op: Operation, schema: dict, instance) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in _validator(op, schema).iter_errors(instance)]


def check_exchange(exchange: dict) -> list[str]:
    """Problems with one request/response pair; an empty list means it agrees with the spec."""
    service, method, path = exchange["service"], exchange["method"], exchange["path"]
    for prefix in (VSSPS_PREFIX, SERVER_PREFIX):
        if path.startswith(f"{prefix}/"):
            path = path[len(prefix):]
    for (svc, verb, pattern), fields in OUTSIDE_THE_SPECS.items():
        if (svc, verb) == (service, method) and pattern.match(path):
            answer = exchange.get("response") or {}
            return [f"{method} {path}: answer lacks {f}" for f in fields
                    if exchange["status"] < 400 and f not in answer]
    op = find_operation(service, method, path)
    if op is None:
        return [f"{method} {path}: no such operation in the {service} spec"]
    problems = []
    params = _params(op)
    declared = {p["name"] for p in params if p.get("in") == "query"}
    for p in params:
        if p.get("in") == "query" and p.get("required") and p["name"] not in exchange["query"]:
            problems.append(f"{method} {path}: required query parameter {p['name']} missing")
    for name in exchange["query"]:
        if name not in declared:
            problems.append(f"{method} {path}: query parameter {name} is not in the spec")
    # request body
    if op.service == "ado":
        body_param = next((p for p in params if p.get("in") == "body"), None)
        if body_param is not None and exchange["body"] is not None:
            problems += [f"{method} {path} request {e}" for e in _errors(op, body_param["schema"], exchange["body"])]
    else:
        request_body = op.op.get("requestBody")
        if request_body and exchange["body"] is not None:
            schema = request_body["content"]["application/json"]["schema"]
            problems += [f"{method} {path} request {e}" for e in _errors(op, schema, exchange["body"])]
    # response body (documented for success only)
    status = exchange["status"]
    if 200 <= status < 300 and exchange["response"] is not None:
        responses = op.op.get("responses", {})
        spec_response = responses.get(str(status)) or responses.get("200") or responses.get("201")
        if spec_response is None:
            problems.append(f"{method} {path}: status {status} is not documented")
        else:
            schema = spec_response.get("schema") if op.service == "ado" else \
                (spec_response.get("content", {}).get("application/json", {}) or {}).get("schema")
            if schema is not None:
                body = exchange["response"]
                if op.service == "ado" and schema.get("type") == "array":
                    if not isinstance(body, dict) or "value" not in body:
                        problems.append(f"{method} {path}: list answer lacks the value wrapper")
                        body = []
                    else:
                        body = body["value"]
                problems += [f"{method} {path} response {e}" for e in _errors(op, schema, body)]
    return problems
