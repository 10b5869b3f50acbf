"""What checking a sample concludes: one `CheckResult` per check, the `QualityReport`
that collects them, and `SampleRejected`, raised when the bytes cannot be decoded or a
hard check fails (the HTTP layer answers 422 with the table)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["hard", "warning"]
ProblemCode = Literal[
    "empty", "too_large", "undecodable", "unsupported_format", "unsupported_codec",
    "truncated", "too_long", "quality", "speaker_mismatch",
]


class CheckResult(BaseModel):
    """One line of the check table: what was measured against what limit."""

    model_config = ConfigDict(frozen=True)

    name: str
    passed: bool
    severity: Severity
    value: float | None = None
    threshold: float | tuple[float, float] | None = None
    unit: str = ""
    message: str


class QualityReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    checks: list[CheckResult]
    quality_score: float = Field(ge=0.0, le=1.0)
    accepted: bool
    warnings: list[str]
    duration_s: float
    sample_rate: int = Field(description="rate of the upload, before resampling")
    channels: int
    bit_depth: int | None
    format: str
    codec: str
    fit_for: list[str] = Field(description="cloning engines whose duration window the sample meets")

    def check(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def hard_failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.severity == "hard" and not c.passed]

    def with_checks(self, extra: Iterable[CheckResult]) -> QualityReport:
        """The report with more checks appended (e.g. speaker consistency, which needs
        the personality's other samples)."""
        checks = [*self.checks, *extra]
        return self.model_copy(
            update={
                "checks": checks,
                "accepted": not any(c.severity == "hard" and not c.passed for c in checks),
                "warnings": [c.message for c in checks if not c.passed and c.severity == "warning"],
            }
        )

    def raise_if_rejected(self) -> None:
        failures = self.hard_failures
        if failures:
            raise SampleRejected(
                "sample failed " + "; ".join(f.message for f in failures), "quality", self.checks
            )


class SampleRejected(ValueError):
    """The upload cannot be a reference sample. `reason` is for people, `problem` a
    stable code for clients, `checks` the full table when quality checks ran (or the
    failed `decodable` check when the bytes are the problem). Pickles via `args`."""

    status_code: ClassVar[int] = 422

    def __init__(
        self, reason: str, problem: ProblemCode = "quality", checks: list[CheckResult] | None = None
    ) -> None:
        checks = list(checks or [])
        super().__init__(reason, problem, checks)
        self.reason = reason
        self.problem: ProblemCode = problem
        self.checks = checks

    def __str__(self) -> str:
        return self.reason


class SpeakerMismatch(SampleRejected):
    """The upload sounds like someone else than the personality's other samples;
    `similarity` is the lowest score against them (the same speaker scores above the
    `speaker_consistency` check's threshold)."""

    def __init__(self, reason: str, similarity: float, checks: list[CheckResult] | None = None) -> None:
        super().__init__(reason, "speaker_mismatch", checks)
        self.args = (reason, similarity, self.checks)
        self.similarity = similarity
