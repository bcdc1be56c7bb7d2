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
from .request_table import _format_of, merge_traces, read_request_table


class InputError(ValueError):
    """A request source that cannot be read as asked (the text says which file and why)."""


def _first_json_line(path: Path) -> dict | None:
    kind = compression_of(path)
    if kind == "gzip":
        f = gzip.open(path, "rb")
    elif kind == "zstd":
        import zstandard

        f = zstandard.open(path, "rb")
    else:
        f = open(path, "rb")
    with f:
        for k, raw in enumerate(f):
            if k > 200:
                return None
            line = raw.decode("utf-8", "replace").lstrip("\ufeff").strip()
            if line.startswith("{"):
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                return obj if isinstance(obj, dict) else None
    return None


def _looks_like_concerto(path: Path) -> bool:
    obj = _first_json_line(path)
    return obj is not None and "timestamp" in obj and ("fields" in obj or "level" in obj)


def detect_format(path: Path) -> str:
    """``concerto``, ``trace`` (our own Parquet), ``csv``, ``tsv``, ``parquet`` or ``ndjson``."""
    fmt = _format_of(path, None)
    if fmt == "parquet":
        cols = pl.read_parquet_schema(path)
        return "trace" if {"t_ms", "model"} <= set(cols) else "parquet"
    if fmt in ("csv", "tsv") and not path.name.lower().endswith((".log", ".log.gz", ".log.zst")):
        return fmt
    return "concerto" if _looks_like_concerto(path) else "ndjson"


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
        other = [str(f) for f, k in formats.items() if k != "concerto"]
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
            raise InputError(
                f"{f}: not a Concerto JSON log; name its columns with --time-col and --model-col"
            )
        table_fmt = None if kind in ("trace", "auto") else kind
        traces.append(
            read_request_table(f, time=time_col, model=model_col, unit=unit, fmt=table_fmt)
        )
        if strict and traces[-1].report is not None and traces[-1].report.skipped:
            line, why = traces[-1].report.skipped[0]
            raise InputError(f"{f}: row {line}: {why} (--strict)")
    return traces[0] if len(traces) == 1 else merge_traces(traces)
