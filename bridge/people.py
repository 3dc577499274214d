"""How the bridge names a person: by Entra tenant id and object id, never by a sign-in name (which can be
renamed, reassigned or copied by another tenant). A UPN is for display, and for finding someone once when an
admin types it. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_PERSON = re.compile(rf"(?P<oid>{GUID})@(?P<tid>{GUID})")


@dataclass(frozen=True)
class PersonId:
    tenant_id: str
    object_id: str

    def __post_init__(self):
        object.__setattr__(self, "tenant_id", self.tenant_id.lower())
        object.__setattr__(self, "object_id", self.object_id.lower())

    @classmethod
    def parse(cls, text: str) -> PersonId | None:
        """``<object id>@<tenant id>`` (two GUIDs), or None when ``text`` is not that."""
        found = _PERSON.fullmatch(text.strip())
        return cls(found["tid"], found["oid"]) if found else None

    @property
    def subject(self) -> str:
        """How records name this person (``entra:<oid>@<tid>``)."""
        return f"entra:{self}"

    def __str__(self) -> str:
        return f"{self.object_id}@{self.tenant_id}"


LOCAL_ADMIN = "token:admin"  # the local admin token's own namespace: no Entra account can be named so
