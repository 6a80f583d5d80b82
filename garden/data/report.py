"""What inspecting a source finds: the issues (with their locations) and the report."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

ISSUES_KEPT_PER_KIND = 50


@dataclass
class Issue:
    """One problem or warning: where (``line 7``), what kind, and what it says."""

    kind: str
    message: str
    location: str | None = None

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


@dataclass
class IssueLog:
    """Counts every issue by kind; keeps the first few of each kind with their locations."""

    items: list[Issue] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, message: str, location: str | None = None) -> None:
        self.counts[kind] += 1
        if self.counts[kind] <= ISSUES_KEPT_PER_KIND:
            self.items.append(Issue(kind, message, location))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class InspectReport:
    """What a source holds and what is wrong with it."""

    source: str
    source_kind: str
    file_type: str | None
    format: str
    kind: str
    confidence: float
    mapping: dict[str, Any]
    detection: str
    candidates: list[dict[str, Any]]
    columns: list[str]
    rows: int
    valid_rows: int
    invalid_rows: int
    errors: list[Issue]
    warnings: list[Issue]
    error_counts: dict[str, int]
    warning_counts: dict[str, int]
    token_stats: dict[str, Any]
    token_lengths: list[int]
    max_seq_len: int | None
    raw_preview: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    rendered: list[str]
    reasoning_rows: int = 0
    reasoning: str = "keep"

    @property
    def usable(self) -> bool:
        return self.valid_rows > 0

    @property
    def problem(self) -> str | None:
        if self.valid_rows == 0:
            first = f" First problem: {self.errors[0]}." if self.errors else ""
            return f"None of the {self.rows} rows can be used.{first}"
        return None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["usable"] = self.usable
        data["problem"] = self.problem
        return data
