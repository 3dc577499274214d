"""Configuration as code: ``bridge config check|plan|apply FILE.yaml``.

``schema`` reads a file and reports every problem of it in one round; ``apply`` makes the database say what the
file says (``plan`` is the same run, rolled back), and finds what the file no longer lists.
"""

from .apply import Change, Diff, RepositoryResolver, Unlisted, apply, link_repository, remove, unlisted
from .schema import Desired, load, read

__all__ = ["Change", "Desired", "Diff", "RepositoryResolver", "Unlisted", "apply", "link_repository", "load", "read",
           "remove", "unlisted"]
