"""One entry point for every request source the CLI accepts: which reader a path needs.

Concerto's own JSON logs are recognised by their first JSON line (a tracing event with a
``timestamp`` and ``fields`` or ``level``); anything else is a request table whose time and
model columns the user names. A trace saved by ``Trace.to_parquet`` needs no column names.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl

from ..model.trace import Trace
from .concerto_log import read_concerto_log
from .log_files import compression_of, expand_log_paths
from .request_table import merge_traces, read_request_table


class InputError(ValueError):
    """A request source that cannot be read as asked (the text says which file and why)."""


def _first_json_line(path: Path) -> dict | None:
    kind = compression_of(path)
    if kind == "gzip":
        f = gzip.open(path, "rt", encoding="utf-8", errors="replace")
    elif kind == "zstd":
        import zstandard

        f = zstandard.open(path, "rt", encoding="utf-8", errors="replace")
    else:
        f = open(path, encoding="utf-8", errors="replace")
    with f:
        for k, raw in enumerate(f):
            if k > 200:
                return None
            line = raw.lstrip("\ufeff").strip()
            if line.startswith("{"):
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                return obj if isinstance(obj, dict) else None
    return None


def detect_format(path: Path) -> str:
    """``concerto``, ``trace`` (our own Parquet), ``csv``, ``tsv``, ``parquet``, ``ndjson``, or
    ``unknown`` (nothing to judge by: it joins the Concerto logs it is read with).

    Only an explicit table suffix makes a table; any other name (``concerto.log.2.gz``,
    ``app.log``, no suffix) is judged by its first JSON line.
    """
    name = path.name.lower()
    for suffix in (".gz", ".zst", ".zstd"):
        name = name.removesuffix(suffix)
    if name.endswith((".parquet", ".pq")):
        cols = pl.read_parquet_schema(path)
        return "trace" if {"t_ms", "model"} <= set(cols) else "parquet"
    if name.endswith((".csv", ".tsv")):
        return name[-3:]
    obj = _first_json_line(path)
    if obj is None:
        return "unknown"  # empty, or no JSON object in its first lines
    return "concerto" if "timestamp" in obj and ("fields" in obj or "level" in obj) else "ndjson"


def read_requests(
    paths,
    *,
    fmt: str | None = "auto",
    time_col: str | None = None,
    model_col: str | None = None,
    unit: str | None = None,
    strict: bool = False,
) -> Trace:
    """A trace from Concerto logs or request tables; several files become one trace."""
    files = expand_log_paths(paths)
    formats = {f: (detect_format(f) if fmt in (None, "auto") else fmt) for f in files}
    if "concerto" in formats.values():
        other = [str(f) for f, k in formats.items() if k not in ("concerto", "unknown")]
        if other:
            raise InputError(
                f"cannot mix Concerto JSON logs with request tables in one replay: {', '.join(other)}"
            )
        return read_concerto_log(files, strict=strict)
    traces = []
    for f, kind in formats.items():
        if kind == "trace" and time_col is None:
            traces.append(Trace.from_parquet(f))
            continue
        if time_col is None or model_col is None:
            empty = f.stat().st_size == 0
            raise InputError(
                f"{f}: " + ("the file is empty" if empty else
                            "not a Concerto JSON log (no tracing JSON object in its first lines); "
                            "for a request table name its columns with --time-col and --model-col")
            )
        table_fmt = None if kind in ("trace", "auto") else kind
        traces.append(
            read_request_table(f, time=time_col, model=model_col, unit=unit, fmt=table_fmt)
        )
        if strict and traces[-1].report is not None and traces[-1].report.skipped:
            line, why = traces[-1].report.skipped[0]
            raise InputError(f"{f}: row {line}: {why} (--strict)")
    return traces[0] if len(traces) == 1 else merge_traces(traces)
