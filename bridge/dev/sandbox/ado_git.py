"""The sandbox's Azure DevOps Git API (repositories, pull requests, iterations, statuses, threads) and its
profile service (who am I, which organizations), in the shapes of the official git 7.1 and profile specs."""

from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, request

from .answers import ado_error, bearer_identity, listing
from .identity import IdentityState
from .values import now_iso
from .world import World

THREAD_STATUSES = ("unknown", "active", "fixed", "wontFix", "closed", "byDesign", "pending")


def create_git_blueprint(world: World, identity: IdentityState) -> Blueprint:
    bp = Blueprint("sandbox-ado-git", __name__)

    def repo_or_404(org: str, project: str, repository: str):
        repo = world.ado.find_repo(org, project, repository)
        if repo is None:
            return None, ado_error(404, f"TF401019: The Git repository with name or identifier {repository} "
                                        "does not exist or you do not have permissions for the operation "
                                        "you are attempting.", "GitRepositoryNotFoundException")
        return repo, None

    def pr_or_404(repo: dict, pr_id: int):
        pr = world.ado.prs.get(pr_id)
        if pr is None or pr["repository_id"] != repo["id"]:
            return None, ado_error(404, "TF401180: The requested pull request was not found.",
                                   "GitPullRequestNotFoundException")
        return pr, None

    def find_pr(org: str, project: str, repository: str, pr_id: int):
        """(pull request, None) or (None, the 404 answer)."""
        repo, error = repo_or_404(org, project, repository)
        return (None, error) if error else pr_or_404(repo, pr_id)

    def prs_of(repository_ids: set[str]):
        """A page of these repositories' pull requests, by ``searchCriteria.status``, ``$top`` and ``$skip``."""
        status = request.args.get("searchCriteria.status", "active")
        prs = [world.ado.pr_json(p) for p in world.ado.prs.values()
               if p["repository_id"] in repository_ids and (status == "all" or p["status"] == status)]
        skip, top = int(request.args.get("$skip", 0)), int(request.args.get("$top", 100))
        return listing(prs[skip:skip + top])

    @bp.get("/<org>/<project>/_apis/git/repositories/<repository>")
    def ado_get_repository(org, project, repository):
        with world.lock:
            repo, error = repo_or_404(org, project, repository)
            return error or jsonify(world.ado.repo_json(repo))

    @bp.get("/<org>/<project>/_apis/git/repositories/<repository>/pullrequests/<int:pr_id>")
    def ado_get_pr(org, project, repository, pr_id):
        with world.lock:
            pr, error = find_pr(org, project, repository, pr_id)
            return error or jsonify(world.ado.pr_json(pr))

    @bp.get("/<org>/<project>/_apis/git/repositories/<repository>/pullrequests")
    def ado_list_prs(org, project, repository):
        with world.lock:
            repo, error = repo_or_404(org, project, repository)
            if error:
                return error
            return prs_of({repo["id"]})

    @bp.get("/<org>/<project>/_apis/git/pullrequests")
    def ado_list_project_prs(org, project):
        with world.lock:
            found = world.ado.find_project(org, project)
            if found is None:
                return ado_error(404, f"TF200016: The following project does not exist: {project}. Verify that "
                                      "the name of the project is correct and that the project exists on the "
                                      "specified Azure DevOps Server.", "ProjectDoesNotExistWithNameException")
            return prs_of({r["id"] for r in world.ado.repos.values() if r["project_id"] == found["id"]})

    @bp.get("/<org>/<project>/_apis/git/repositories/<repository>/pullRequests/<int:pr_id>/iterations")
    def ado_iterations(org, project, repository, pr_id):
        with world.lock:
            _, error = find_pr(org, project, repository, pr_id)
            return error or listing(world.ado.iterations[pr_id])

    @bp.route("/<org>/<project>/_apis/git/repositories/<repository>/pullRequests/<int:pr_id>/statuses",
               methods=["GET", "POST"])
    def ado_statuses(org, project, repository, pr_id):
        with world.lock:
            _, error = find_pr(org, project, repository, pr_id)
            if error or request.method == "GET":
                return error or listing(world.ado.statuses[pr_id])
            body = request.get_json(silent=True)
            if not isinstance(body, dict) or not (body.get("context") or {}).get("name"):
                return ado_error(400, "The status context name is required.")
            iteration_id = body.get("iterationId")
            known = {it["id"] for it in world.ado.iterations[pr_id]}
            if iteration_id is None and world.ado.require_iteration_status:
                return ado_error(403, "Pull request status rejected by status policy. Policy configuration "
                                      "requires status to be posted on iteration.",
                                 "GitPullRequestStatusRejectedByPolicyException")
            if iteration_id is not None and iteration_id not in known:
                return ado_error(400, f"Iteration {iteration_id} does not exist.")
            if body.get("state") not in (None, "notSet", "pending", "succeeded", "failed", "error",
                                         "notApplicable"):
                return ado_error(400, "Invalid status state.")
            status = world.ado.add_status(pr_id, body)
            return jsonify(status)

    @bp.route("/<org>/<project>/_apis/git/repositories/<repository>/pullRequests/<int:pr_id>/threads",
               methods=["GET", "POST"])
    def ado_threads(org, project, repository, pr_id):
        with world.lock:
            _, error = find_pr(org, project, repository, pr_id)
            if error or request.method == "GET":
                return error or listing(world.ado.threads[pr_id])
            body = request.get_json(silent=True)
            comments = (body or {}).get("comments") if isinstance(body, dict) else None
            if not comments or not isinstance(comments, list) or not comments[0].get("content"):
                return ado_error(400, "Thread must contain at least one comment.")
            thread = world.ado.add_thread(pr_id, comments[0]["content"], author="bridge",
                                          status=body.get("status", "active"), properties=body.get("properties"))
            return jsonify(thread)

    THREAD = "/<org>/<project>/_apis/git/repositories/<repository>/pullRequests/<int:pr_id>/threads/<int:thread_id>"

    @bp.route(THREAD, methods=["GET", "PATCH"])
    def ado_thread(org, project, repository, pr_id, thread_id):
        with world.lock:
            _, error = find_pr(org, project, repository, pr_id)
            thread = None if error else world.ado.thread(pr_id, thread_id)
            if error or thread is None:
                return error or ado_error(404, f"Thread {thread_id} does not exist.")
            if request.method == "GET":
                return jsonify(thread)
            body = request.get_json(silent=True)
            if not isinstance(body, dict) or body.get("status", "active") not in THREAD_STATUSES:
                return ado_error(400, "Invalid thread status.")
            return jsonify(world.ado.update_thread(pr_id, thread_id, body))

    @bp.post(f"{THREAD}/comments")
    def ado_reply(org, project, repository, pr_id, thread_id):
        with world.lock:
            _, error = find_pr(org, project, repository, pr_id)
            if error or world.ado.thread(pr_id, thread_id) is None:
                return error or ado_error(404, f"Thread {thread_id} does not exist.")
            body = request.get_json(silent=True)
            if not isinstance(body, dict) or not body.get("content"):
                return ado_error(400, "Comment content is required.")
            return jsonify(world.ado.add_comment(pr_id, thread_id, body["content"], author="bridge",
                                                 parent=int(body.get("parentCommentId") or 0)))

    @bp.patch(f"{THREAD}/comments/<int:comment_id>")
    def ado_edit_comment(org, project, repository, pr_id, *, thread_id, comment_id):
        with world.lock:
            _, error = find_pr(org, project, repository, pr_id)
            if error:
                return error
            body = request.get_json(silent=True)
            if not isinstance(body, dict) or not body.get("content"):
                return ado_error(400, "Comment content is required.")
            comment = world.ado.edit_comment(pr_id, thread_id, comment_id, body["content"])
            return jsonify(comment) if comment else ado_error(404, f"Comment {comment_id} does not exist.")

    # -- who am I and where (app.vssps.visualstudio.com, served under /vssps) ---------------------------

    @bp.get("/vssps/_apis/profile/profiles/<profile_id>")
    def ado_profile(profile_id):
        who = bearer_identity(identity)
        if who is None:
            return ado_error(401, "TF400813: The user is not authorized to access this resource.",
                             "UnauthorizedRequestException")
        if profile_id not in ("me", who["oid"]):
            return ado_error(404, "Profile not found.", "ProfileNotFoundException")
        return jsonify({"id": who["oid"], "displayName": who["upn"].split("@")[0], "publicAlias": who["oid"],
                        "emailAddress": who["upn"], "coreRevision": 1, "timeStamp": now_iso(), "revision": 1})

    @bp.get("/vssps/_apis/accounts")
    def ado_accounts():
        who = bearer_identity(identity)
        if who is None:
            return ado_error(401, "TF400813: The user is not authorized to access this resource.",
                             "UnauthorizedRequestException")
        if request.args.get("memberId") not in (who["oid"],) and not request.args.get("ownerId"):
            return ado_error(400, "One of the following parameters is required: ownerId, memberId.")
        orgs = sorted({p["org"] for p in world.ado.projects.values() if world.ado.access_of(who, p["org"]) is not None})
        return listing([{"accountId": str(uuid.uuid5(uuid.NAMESPACE_URL, org)), "accountName": org,
                         "accountUri": f"{world.base_url}/{org}/", "organizationName": org} for org in orgs])

    return bp
