"""Small values every part of the sandbox stamps on what it makes: timestamps, fake commit ids, people."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def sha_for(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - a fake commit id, not security


def ref(branch: str) -> str:
    return branch if branch.startswith("refs/") else f"refs/heads/{branch}"


def identity(name: str) -> dict:
    ident = str(uuid.uuid5(uuid.NAMESPACE_DNS, name))
    return {"displayName": name, "id": ident, "uniqueName": f"{name.split(maxsplit=1)[0].lower()}@example.com",
            "url": f"https://example.invalid/_apis/Identities/{ident}"}
