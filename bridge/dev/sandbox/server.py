"""The sandbox's HTTP face: one Flask app with a blueprint per service area (the identity platform, Azure
DevOps Git and administration, dbt Cloud runs and administration, and the ``/_sandbox`` control API), over one
``World``. What every request shares lives here: latency, faults, Azure DevOps authentication, the exchange log.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import socket
import struct
import time

from flask import Flask, Response, g, jsonify, request

from .ado_admin import create_ado_admin_blueprint
from .ado_git import create_git_blueprint
from .answers import ado_error
from .control_routes import create_control_blueprint
from .dbt_admin import create_dbt_admin_blueprint
from .dbt_runs import create_dbt_runs_blueprint
from .identity import IdentityState, create_identity_blueprint
from .world import World


def create_sandbox_app(base_url: str) -> Flask:
    app = Flask("bridge-sandbox")
    world = World(base_url)
    app.extensions["world"] = world
    identity = IdentityState()
    app.extensions["identity"] = identity
    for blueprint in (create_identity_blueprint(identity), create_git_blueprint(world, identity),
                      create_ado_admin_blueprint(world, identity), create_dbt_runs_blueprint(world),
                      create_dbt_admin_blueprint(world), create_control_blueprint(world)):
        app.register_blueprint(blueprint)
    # Azure DevOps Server collections answer the same APIs under the /tfs virtual directory.
    app.register_blueprint(create_git_blueprint(world, identity), url_prefix="/tfs", name="tfs-git")
    app.register_blueprint(create_ado_admin_blueprint(world, identity), url_prefix="/tfs", name="tfs-admin")

    # -- plumbing: latency, faults, auth, the exchange log ------------------------------------------

    def service_of(path: str) -> str | None:
        if path.startswith(("/api/v2/", "/api/v3/")):
            return "dbt"
        if "/_apis/" in path:
            return "ado"
        return None

    @app.before_request
    def _before():
        g.started = time.time()
        service = service_of(request.path)
        g.service = service
        if service is None:
            return None
        if world.latency:
            time.sleep(world.latency)
        fault = world.take_fault(service, request.method, request.path)
        if fault is not None:
            answer = fault_response(service, fault)
            if answer is not None:
                return answer
        if service == "ado" and not _ado_authorized(world, identity):
            return jsonify({"message": "TF400813: The user is not authorized to access this resource.",
                            "typeKey": "UnauthorizedRequestException"}), 401
        if service == "ado":
            refused = world.ado.refuses_version(_organization(request.path), request.args.get("api-version", ""))
            if refused:
                return ado_error(400, refused, "VssVersionOutOfRangeException")
        return None

    def fault_response(service: str, fault) -> Response | None:
        """The faulty answer; None lets the request through (a pure delay)."""
        if fault.delay:
            time.sleep(fault.delay)
        if fault.status == 0:
            return None
        if fault.status == -1:  # connection reset: close the socket under the client
            sock = request.environ.get("werkzeug.socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.close()
            return Response(status=500)
        if fault.status == -2:  # an HTML page instead of JSON (seen from dbt Cloud's API)
            return Response("<html><body>Service temporarily unavailable</body></html>", status=200,
                            mimetype="text/html")
        body = fault.body or ({"message": f"sandbox fault {fault.status}", "typeKey": "SandboxFault"}
                              if service == "ado" else
                              {"status": {"code": fault.status, "is_success": False,
                                          "user_message": "sandbox fault", "developer_message": ""},
                               "data": None})
        response = jsonify(body)
        response.status_code = fault.status
        if fault.retry_after is not None:
            response.headers["Retry-After"] = str(int(fault.retry_after))
        return response

    @app.after_request
    def _after(response: Response):
        if g.get("service"):
            fault = world.take_fault(g.service, request.method, request.path, after=True)
            if fault is not None:
                response = fault_response(g.service, fault) or response
            try:
                req_body = request.get_json(silent=True)
            except Exception:
                req_body = None
            try:
                resp_body = json.loads(response.get_data()) if response.is_json else None
            except ValueError:
                resp_body = None
            world.log_exchange({"at": g.started, "service": g.service, "method": request.method, "path": request.path,
                                "as": _acting_as(identity), "client": request.remote_addr,
                                "query": request.args.to_dict(flat=False), "body": req_body,
                                "status": response.status_code, "response": resp_body,
                                "elapsed": time.time() - g.started})
        return response

    # -- Azure DevOps ----------------------------------------------------------------------------------

    world.start()
    return app


def _organization(path: str) -> str:
    """The organization (or, under /tfs, the Server collection) a request path names."""
    parts = path.strip("/").split("/")
    return parts[1] if parts[0] == "tfs" and len(parts) > 1 else parts[0]


def _acting_as(identity: IdentityState) -> str:
    """Who a request acted as, for the exchange log: "pat", "token" (dbt), "user:<oid>" or "anonymous"."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        who = identity.who(value)
        return f"user:{who['oid']}" if who else "bearer:invalid"
    return {"basic": "pat", "token": "token"}.get(scheme.lower(), "anonymous")


def _ado_authorized(world: World, identity: IdentityState) -> bool:
    """A PAT (Basic, any user name) or an Entra access token from the fake identity platform (Bearer)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        who = identity.who(value)
        if who is None:
            return False
        org = _organization(request.path)
        if org in world.ado.servers:
            return False  # Azure DevOps Server knows no Entra ID tokens
        return org == "vssps" or world.ado.access_of(who, org) is not None  # a token of another tenant: 401
    if scheme.lower() != "basic":
        return False
    try:
        _, _, token = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return token in world.ado.pats
