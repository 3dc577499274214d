"""Small rules of the console's pages: a shared problem shown once, and which ``next`` targets are followed."""

from __future__ import annotations

import pytest

from bridge.history.read import describe_problems
from bridge.web.pages import same_origin


def test_a_problem_several_subscriptions_share_is_shown_once_naming_them():
    lost = "disabled because its creator lost access: re-run set-up"
    hooks = [("git.pullrequest.created", lost), ("git.pullrequest.updated", lost), ("git.pullrequest.merged", lost),
             ("ms.vss-code.git-pullrequest-comment-event", "other")]
    shown = describe_problems(hooks, None)
    assert shown == [f"git.pullrequest.created, git.pullrequest.updated, git.pullrequest.merged: {lost}",
                     "ms.vss-code.git-pullrequest-comment-event: other"]


@pytest.mark.parametrize("target", ["/console", "/console/jobs/12?page=2", "/console/repositories#x"])
def test_paths_on_this_site_are_followed(target):
    assert same_origin(target) == target


@pytest.mark.parametrize("target", [None, "", "console", "//evil.example", "/\\evil.example", "https://evil.example/",
                                    "javascript:alert(1)", "/console\r\nLocation: //evil", "http:/console"])
def test_anything_else_is_not(target):
    assert same_origin(target) is None
