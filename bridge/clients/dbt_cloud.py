"""dbt Cloud Administrative API v2 client: trigger, get, cancel and list runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import requests
from marshmallow import EXCLUDE, Schema, fields, post_load, pre_load

from .. import errors
from ..domain import CAUSE_MAX, DbtRun, RunStatus
from .http import JsonApi

# -- error tree -------------------------------------------------------------------------------------


class DbtCloudError(errors.ApiError):
    service = "dbt-cloud"


class DbtCloudTransportError(DbtCloudError, errors.TransportError):
    pass


class DbtCloudBadRequest(DbtCloudError, errors.BadRequest):
    pass


class DbtCloudUnauthorized(DbtCloudError, errors.Unauthorized):
    pass


class DbtCloudForbidden(DbtCloudError, errors.Forbidden):
    pass


class DbtCloudNotFound(DbtCloudError, errors.NotFound):
    pass


class DbtCloudConflict(DbtCloudError, errors.Conflict):
    pass


class DbtCloudRateLimited(DbtCloudError, errors.RateLimited):
    pass


class DbtCloudServerError(DbtCloudError, errors.ServerError):
    pass


# -- response schema --------------------------------------------------------------------------------

def _when(value) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class _Trigger(Schema):
    class Meta:
        unknown = EXCLUDE

    git_sha = fields.Str(load_default=None, allow_none=True)
    azure_pull_request_id = fields.Int(load_default=None, allow_none=True)
    schema_override = fields.Str(load_default=None, allow_none=True)


class _RunSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    id = fields.Int(required=True)
    status = fields.Int(required=True)
    href = fields.Str(load_default=None, allow_none=True)
    status_message = fields.Str(load_default=None, allow_none=True)
    started_at = fields.Raw(load_default=None, allow_none=True)
    finished_at = fields.Raw(load_default=None, allow_none=True)
    duration = fields.Raw(load_default=None, allow_none=True)
    run_duration = fields.Raw(load_default=None, allow_none=True)
    git_sha = fields.Str(load_default=None, allow_none=True)
    trigger = fields.Nested(_Trigger, load_default=None, allow_none=True)

    @pre_load
    def _unwrap(self, data, **_):
        return data.get("data", data) if isinstance(data, dict) and "status" in data and "data" in data else data

    @post_load
    def _to_domain(self, d, **_):
        started, finished = _when(d.get("started_at")), _when(d.get("finished_at"))
        duration = (finished - started).total_seconds() if started and finished else None
        return DbtRun(run_id=d["id"], status=RunStatus.parse(d["status"]) or RunStatus.QUEUED,
                      href=d.get("href"), status_message=d.get("status_message"), started_at=started,
                      finished_at=finished, duration_seconds=duration,
                      git_sha=d.get("git_sha") or (d.get("trigger") or {}).get("git_sha"))


# Schemas hold no per-call state; one instance each serves every call.
_RUNSCHEMA = _RunSchema()


class DbtCloudClient(JsonApi):
    root_error = DbtCloudError
    errors_by_kind = {
        errors.TransportError: DbtCloudTransportError,
        errors.BadRequest: DbtCloudBadRequest,
        errors.Unauthorized: DbtCloudUnauthorized,
        errors.Forbidden: DbtCloudForbidden,
        errors.NotFound: DbtCloudNotFound,
        errors.Conflict: DbtCloudConflict,
        errors.RateLimited: DbtCloudRateLimited,
        errors.ServerError: DbtCloudServerError,
        errors.HttpError: DbtCloudError,
    }

    def __init__(self, base_url: str, account_id: int, api_token: str, *,
                 session: requests.Session | None = None, timeout: float = 10.0):
        super().__init__(base_url, f"Token {api_token}", session=session, timeout=timeout)
        self.account_id = int(account_id)

    def describe_error(self, response: requests.Response) -> str:
        try:
            status = response.json().get("status") or {}
            return str(status.get("user_message") or status.get("developer_message") or response.text)[:300]
        except (ValueError, AttributeError):
            return response.text[:200]

    @property
    def _account(self) -> str:
        return f"/api/v2/accounts/{self.account_id}"

    def trigger_run(self, job_id: int, *, cause: str, git_sha: str | None = None,
                    pull_request_id: int | None = None, schema_override: str | None = None,
                    steps_override: list[str] | None = None) -> DbtRun:
        body: dict = {"cause": cause[:CAUSE_MAX] or "ado-dbt bridge"}
        if git_sha:
            body["git_sha"] = git_sha  # never together with git_branch
        if pull_request_id is not None:
            body["azure_pull_request_id"] = int(pull_request_id)
        if schema_override:
            body["schema_override"] = schema_override
        if steps_override:
            body["steps_override"] = steps_override
        return _RUNSCHEMA.load(self.call("POST", f"{self._account}/jobs/{int(job_id)}/run/", json=body)["data"])

    def get_run(self, run_id: int) -> DbtRun:
        return _RUNSCHEMA.load(self.call("GET", f"{self._account}/runs/{int(run_id)}/")["data"])

    def cancel_run(self, run_id: int) -> DbtRun:
        return _RUNSCHEMA.load(self.call("POST", f"{self._account}/runs/{int(run_id)}/cancel/")["data"])

    def list_runs(self, job_id: int, *, statuses: tuple[RunStatus, ...] = (), page_size: int = 100,
                  include_trigger: bool = True) -> Iterator[tuple[DbtRun, dict]]:
        """Runs of a job, newest first, with their trigger (to find runs started for a PR and commit)."""
        offset = 0
        while True:
            params: dict = {"job_definition_id": int(job_id), "order_by": "-id", "limit": page_size,
                            "offset": offset}
            if statuses:
                params["status__in"] = [int(s) for s in statuses]  # an array: repeated in the query
            if include_trigger:
                params["include_related"] = "trigger"
            page = self.call("GET", f"{self._account}/runs/", params=params) or {}
            values = page.get("data") or []
            for raw in values:
                yield _RUNSCHEMA.load(raw), (raw.get("trigger") or {})
            total = ((page.get("extra") or {}).get("pagination") or {}).get("total_count")
            offset += len(values)
            if not values or len(values) < page_size or (total is not None and offset >= total):
                return
