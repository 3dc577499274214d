"""What an onboarding operation reports: a step and its outcome, and a set-up's report of its steps."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..contracts import STEP_FAILURES, StepOutcome


@dataclass
class Step:
    step: str
    outcome: StepOutcome
    detail: str = ""

    def as_dict(self) -> dict:
        return {"step": self.step, "outcome": self.outcome, "detail": self.detail}


@dataclass
class SetupReport:
    repository: str
    steps: list[Step] = field(default_factory=list)
    repository_id: int | None = None

    @property
    def outcome(self) -> str:
        outcomes = {s.outcome for s in self.steps}
        if self.steps and self.steps[0].outcome == "skipped":
            return "skipped"
        if outcomes & STEP_FAILURES:
            return "failed"
        if "created" in outcomes and any(s.step == "link" and s.outcome == "created" for s in self.steps):
            return "created"
        if outcomes & {"created", "repaired"}:
            return "repaired"
        return "unchanged"

    @property
    def failed_steps(self) -> list[str]:
        return [s.step for s in self.steps if s.outcome in STEP_FAILURES]


class StepFailed(Exception):
    def __init__(self, outcome: str, detail: str):
        super().__init__(detail)
        self.outcome, self.detail = outcome, detail
