"""The detailed intake account the file readers hand back.

``IntakeReport`` (model/trace.py) says what was read, used and skipped; readers also know which
lines they ignored (blank lines, log events that are not requests), what they assumed (an epoch
unit guessed from magnitudes) and, for a log of several rotated files, each file's own account.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..model.trace import IntakeReport


def _no_lines() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass
class IntakeDetails(IntakeReport):
    """An ``IntakeReport`` plus ignored line numbers, notes and per-file accounts.

    Line numbers are 1-based and local to their file; when several files were read, each
    merged ``skipped`` reason starts with the file name and ``files`` holds one account per
    file (oldest first) with plain reasons and its own ``ignored_lines``.
    """

    ignored_lines: np.ndarray = field(default_factory=_no_lines)
    notes: list[str] = field(default_factory=list)
    files: tuple[IntakeDetails, ...] = ()
    used_what: str = "requests"  # what a used row is: "requests", "events", "rows"

    @property
    def skipped_lines(self) -> list[int]:
        return [n for n, _ in self.skipped]

    def summary(self, max_lines: int = 10) -> str:
        text = super().summary(max_lines)
        if self.used_what != "requests":
            text = text.replace(" requests used,", f" {self.used_what} used,", 1)
        return "\n".join([text, *(f"  note: {n}" for n in self.notes)])

    @classmethod
    def combine(cls, parts: list[IntakeDetails], source: str = "") -> IntakeDetails:
        """One account for several files read as one log."""
        if len(parts) == 1:
            return parts[0]
        return cls(
            source=source or ", ".join(p.source for p in parts),
            lines_read=sum(p.lines_read for p in parts),
            rows_used=sum(p.rows_used for p in parts),
            skipped=[(n, f"{_name(p.source)}: {why}") for p in parts for n, why in p.skipped],
            ignored=sum(p.ignored for p in parts),
            ignored_lines=np.zeros(0, dtype=np.int64),
            notes=[f"{_name(p.source)}: {n}" for p in parts for n in p.notes],
            files=tuple(parts),
            used_what=parts[0].used_what,
        )


def _name(source: str) -> str:
    return source.replace("\\", "/").rsplit("/", 1)[-1]
