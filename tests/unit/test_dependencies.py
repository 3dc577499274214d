"""The dependency floors and the locks agree: every declared requirement is pinned, with hashes, to a version
that satisfies it (so the image and CI install what pyproject.toml promises, above the known fixes)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)(.*?)(?=^\S|\Z)", re.M | re.S)


def pins(lock: str) -> dict[str, tuple[str, list[str]]]:
    text = (ROOT / "requirements" / lock).read_text()
    return {canonicalize_name(name): (version, re.findall(r"--hash=sha256:([0-9a-f]{64})", rest))
            for name, version, rest in PIN.findall(text)}


@pytest.mark.parametrize(("lock", "requirements"), [
    ("runtime.lock", PROJECT["dependencies"]),
    ("dev.lock", PROJECT["dependencies"] + PROJECT["optional-dependencies"]["test"]),
])
def test_every_requirement_is_pinned_with_hashes_above_its_floor(lock, requirements):
    pinned = pins(lock)
    assert pinned and all(hashes for _, hashes in pinned.values()), "a pin without a hash"
    for line in requirements:
        wanted = Requirement(line)
        name = canonicalize_name(wanted.name)
        assert name in pinned, f"{wanted.name} is not in requirements/{lock}: run make lock"
        assert wanted.specifier.contains(pinned[name][0], prereleases=True), \
            f"{wanted.name}=={pinned[name][0]} in {lock} does not satisfy {wanted.specifier}: run make lock"


def test_the_floors_are_above_the_known_fixes():
    floors = {canonicalize_name(Requirement(r).name): Requirement(r).specifier for r in PROJECT["dependencies"]}
    fixed = {"gunicorn": "23.0.0", "requests": "2.32.4", "cryptography": "44.0.1", "werkzeug": "3.0.6",
             "jinja2": "3.1.6", "urllib3": "2.5.0"}
    for name, version in fixed.items():
        lowest = next(s.version for s in floors[name] if s.operator == ">=")
        assert Version(lowest) >= Version(version), f"{name}>={lowest} admits versions before the fix {version}"
