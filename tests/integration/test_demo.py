"""`make demo ONCE=1` keeps working: the embedded default (SQLite, private Redis, sandbox) end to end."""

from __future__ import annotations

import subprocess
import sys

from bridge.dev.stack import ROOT


def test_demo_plays_every_story_on_sqlite(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bridge.cli", "demo", "--once", "--workdir", str(tmp_path / "demo")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "7 of 7 stories passed." in out.stdout
