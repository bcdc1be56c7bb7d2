"""The compact request trace every reader produces and every replay consumes.

Two columns (int64 UTC epoch ms, int32 model code) and a name dictionary: 12 bytes a request.
Sorted by time with a stable sort, so requests logged in the same millisecond keep file order.
Readers also hand back an ``IntakeReport``: what was read, used, skipped and why, line by line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from .dtypes import CODE_DTYPE, TIME_DTYPE


def enum_series(name: str, codes: np.ndarray, categories) -> pl.Series:
    """Codes -> a polars Enum column (integer -> Enum casts are not allowed in polars 2)."""
    cats = list(categories)
    return pl.Series(name, cats, dtype=pl.Enum(cats)).gather(np.asarray(codes, dtype=np.int64))


@dataclass
class IntakeReport:
    """An exact account of one input: nothing is dropped without a line number and a reason."""

    source: str = ""
    lines_read: int = 0
    rows_used: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    ignored: int = 0  # valid lines that are not requests (other log events, blank lines)

    def summary(self, max_lines: int = 10) -> str:
        head = (
            f"{self.source or 'input'}: {self.lines_read} lines read, {self.rows_used} requests "
            f"used, {self.ignored} other lines ignored, {len(self.skipped)} skipped"
        )
        rows = [f"  line {n}: {why}" for n, why in self.skipped[:max_lines]]
        if len(self.skipped) > max_lines:
            rows.append(f"  ... and {len(self.skipped) - max_lines} more skipped lines")
        return "\n".join([head, *rows])


@dataclass(eq=False)
class Trace:
    """Requests in time order: ``t_ms[i]`` (int64 UTC epoch ms) asks for ``names[model[i]]``."""

    t_ms: np.ndarray
    model: np.ndarray
    names: tuple[str, ...]
    report: IntakeReport | None = None
    line: np.ndarray | None = None  # source line of each request, when the reader knows it

    def __post_init__(self):
        self.t_ms = np.ascontiguousarray(self.t_ms, dtype=TIME_DTYPE)
        self.model = np.ascontiguousarray(self.model, dtype=CODE_DTYPE)
        self.names = tuple(self.names)
        if self.t_ms.shape != self.model.shape:
            raise ValueError("t_ms and model must have the same length")
        if len(self.t_ms) > 1 and np.any(np.diff(self.t_ms) < 0):
            raise ValueError("trace times must be sorted; build traces with Trace.from_columns")

    def __len__(self) -> int:
        return int(self.t_ms.shape[0])

    def __repr__(self) -> str:
        span = ""
        if len(self):
            first, last = (np.datetime64(int(x), "ms") for x in (self.t_ms[0], self.t_ms[-1]))
            span = f", {first} .. {last}"
        return f"Trace({len(self)} requests, {len(self.names)} models{span})"

    @classmethod
    def from_columns(cls, t_ms, models, *, report=None, line=None) -> Trace:
        """Build from a time column and a model-name column, in file order (stable sort)."""
        t_ms = np.asarray(t_ms, dtype=TIME_DTYPE)
        names_s = pl.Series("model", models, dtype=pl.String)
        names = tuple(names_s.unique(maintain_order=True).to_list())
        codes = names_s.cast(pl.Enum(names)).to_physical().to_numpy().astype(CODE_DTYPE)
        order = np.argsort(t_ms, kind="stable")
        if line is not None:
            line = np.asarray(line, dtype=np.int64)[order]
        return cls(t_ms[order], codes[order], names, report=report, line=line)

    @classmethod
    def from_frame(cls, df: pl.DataFrame, *, time="t_ms", model="model", report=None) -> Trace:
        return cls.from_columns(df[time].to_numpy(), df[model], report=report)

    def model_names(self) -> pl.Series:
        return enum_series("model", self.model, self.names)

    def to_frame(self) -> pl.DataFrame:
        cols = {
            "t_ms": self.t_ms,
            "time": pl.Series(self.t_ms).cast(pl.Datetime("ms", "UTC")),
            "model": self.model_names(),
        }
        if self.line is not None:
            cols["line"] = self.line
        return pl.DataFrame(cols)

    def to_parquet(self, path: str | Path) -> None:
        pl.DataFrame({"t_ms": self.t_ms, "model": self.model_names()}).write_parquet(path)

    @classmethod
    def from_parquet(cls, path: str | Path) -> Trace:
        """Load a trace saved by ``to_parquet`` (or any Parquet with ``t_ms`` and ``model``)."""
        df = pl.read_parquet(path, columns=["t_ms", "model"])
        return cls.from_columns(df["t_ms"].to_numpy(), df["model"].cast(pl.String))

    def slice(self, start_ms: int | None = None, stop_ms: int | None = None) -> Trace:
        """Requests with ``start_ms <= t < stop_ms`` (same name dictionary)."""
        lo = 0 if start_ms is None else int(np.searchsorted(self.t_ms, start_ms, "left"))
        hi = len(self) if stop_ms is None else int(np.searchsorted(self.t_ms, stop_ms, "left"))
        line = None if self.line is None else self.line[lo:hi]
        return Trace(self.t_ms[lo:hi], self.model[lo:hi], self.names, line=line)

    def rename(self, mapping: dict[str, str]) -> Trace:
        """Map trace model ids onto registry ids (e.g. an anonymised trace onto real models)."""
        names = tuple(mapping.get(n, n) for n in self.names)
        if len(set(names)) == len(names):
            return Trace(self.t_ms, self.model, names, report=self.report, line=self.line)
        # Several ids map onto one: recode.
        uniq = tuple(dict.fromkeys(names))
        lut = np.array([uniq.index(n) for n in names], dtype=CODE_DTYPE)
        return Trace(self.t_ms, lut[self.model], uniq, report=self.report, line=self.line)
