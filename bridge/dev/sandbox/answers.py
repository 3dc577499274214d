"""How the sandbox answers, in each service's own shapes (shared by its route modules)."""

from __future__ import annotations

from flask import Response, jsonify, request

from .identity import IdentityState
from .world import World


def ado_error(status: int, message: str, type_key: str = "InvalidArgumentValueException"):
    return jsonify({"$id": "1", "innerException": None, "message": message, "typeName": type_key,
                    "typeKey": type_key, "errorCode": 0, "eventId": 3000}), status


def listing(values: list, *, continuation: str | None = None) -> Response:
    """Azure DevOps' collection wrapper; a next page is announced in ``x-ms-continuationtoken``."""
    response = jsonify({"value": values, "count": len(values)})
    if continuation is not None:
        response.headers["x-ms-continuationtoken"] = continuation
    return response


def bearer_identity(identity: IdentityState) -> dict | None:
    """Who an Entra access token stands for; None for a PAT or no token."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return identity.who(value) if scheme.lower() == "bearer" else None


def dbt_error(status: int, message: str):
    return jsonify({"status": {"code": status, "is_success": False, "user_message": message,
                               "developer_message": ""}, "data": None}), status


def dbt_ok(data, extra=None, *, code: int = 200):
    body = {"status": {"code": code, "is_success": True, "user_message": "Success!", "developer_message": ""},
            "data": data}
    if extra is not None:
        body["extra"] = extra
    response = jsonify(body)
    response.status_code = code
    return response


def dbt_auth(world: World, account_id: int):
    """None when the request carries the account's service token, else the 401 answer."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = world.dbt.tokens.get(account_id)
    if scheme not in ("Token", "Bearer") or not expected or token != expected:
        return dbt_error(401, "Invalid token.")
    return None
