"""Plain request logs (CSV, Parquet, NDJSON): a timestamp column and a model column -> Trace.

Users export request logs from many places (gateways, load balancers, billing tables). Each has a
time column and a model column, named by the user, holding any of:

* date-time strings, with an offset (``2024-12-03T00:00:06.85+01:00``, ``Z``) or without one
  (naive: UTC unless ``tz=`` names the zone they were written in); any number of fraction
  digits (a decimal fraction, sub-ms truncated); ``T`` or a space between date and time;
* epoch numbers in ``unit`` s / ms / us / ns (given, or guessed from the magnitudes: the guess
  is written into the report's notes), integers or decimals, converted exactly;
* native Parquet date-times (with or without a zone) and dates.

A value that is missing or cannot be read skips its row, counted with its number and reason;
nothing is fatal except a missing column. Rows are numbered by file line for CSV/TSV (the
header is line 1; quoted fields with line breaks would shift this) and NDJSON, from 1 for
Parquet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from ..model.dtypes import CODE_DTYPE, TIME_DTYPE
from ..model.trace import Trace
from . import json_scan as js
from .intake import IntakeDetails
from .log_files import TruncatedStream, read_batches

UNITS = {"s": 3, "ms": 0, "us": -3, "ns": -6}  # power of ten that turns the unit into ms
_SLICE = 1_000_000  # rows converted at a time (bounded temporary memory)

_T_REASON = {
    js.T_FORMAT: "not a date-time or epoch number",
    js.T_RANGE: "a date or time field is out of range",
}


class TableError(ValueError):
    """A request table that cannot be read at all (missing file or column, unknown format)."""


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt.lower()
    name = path.name.lower()
    for suf in (".gz", ".zst", ".zstd"):
        if name.endswith(suf):
            name = name[: -len(suf)]
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".ndjson", ".jsonl", ".json")):
        return "ndjson"
    if name.endswith(".tsv"):
        return "tsv"
    return "csv"


# --- time values -> UTC epoch ms ---------------------------------------------------------------
class _Times:
    """Converts one time column, slice by slice, collecting skips and notes."""

    def __init__(self, unit: str | None, tz: str | None, report: IntakeDetails):
        if unit is not None and unit not in UNITS:
            raise TableError(f"unit {unit!r}: expected one of {', '.join(UNITS)}")
        self.unit, self.tz, self.report = unit, tz, report
        self.naive = 0
        self.numbers_seen = 0

    def choose_unit(self, approx: np.ndarray) -> str:
        """The epoch unit: given, or guessed once from the median magnitude (and said so)."""
        if self.unit is None:
            mag = float(np.median(np.abs(approx))) if len(approx) else 0.0
            self.unit = "s" if mag < 1e11 else "ms" if mag < 1e14 else "us" if mag < 1e17 else "ns"
            self.report.notes.append(
                f"epoch unit guessed from magnitudes: {self.unit!r} (median |value| {mag:.4g}); "
                "pass unit= to set it"
            )
        return self.unit

    def from_strings(self, s: pl.Series, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Date-time or number strings -> (ms, ok)."""
        s = s.cast(pl.String).str.strip_chars()
        buf, starts, ends = _string_buffer(s)
        return self.from_buffer(buf, starts, ends, s.is_null().to_numpy(), rows)

    def from_buffer(self, buf, starts, ends, missing, rows) -> tuple[np.ndarray, np.ndarray]:
        """Values ``buf[starts:ends]`` (date-times or numbers) -> (ms, ok); jitted parsing."""
        missing = missing | (ends == starts)
        local, st, zoned, off = js.parse_table_times(buf, starts, ends)
        nst, neg, mant, exp, approx = js.parse_epoch_numbers(buf, starts, ends)
        is_num = (nst == js.N_OK) & ~missing
        out = np.zeros(len(starts), dtype=np.int64)
        ok = np.zeros(len(starts), dtype=bool)
        if is_num.any():
            shift = UNITS[self.choose_unit(approx[is_num])]
            ms, est = js.epoch_to_ms(neg, mant, exp, shift)
            good = is_num & (est == js.N_OK)
            out[good], ok[good] = ms[good], True
            self._skip(rows, is_num & ~good, "epoch number out of int64 milliseconds range")
        is_dt = ~is_num & ~missing & (st == js.T_OK)
        utc = local - off.astype(np.int64) * 60_000
        out[is_dt & zoned], ok[is_dt & zoned] = utc[is_dt & zoned], True
        naive = is_dt & ~zoned
        if naive.any():
            self.naive += int(naive.sum())
            ms, good = self._localize(local[naive])
            idx = np.flatnonzero(naive)
            out[idx[good]], ok[idx[good]] = ms[good], True
            self._skip(rows[idx], ~good, f"ambiguous or non-existent local time in {self.tz} "
                       "(a DST change)")  # fmt: skip
        self._skip(rows, missing, "missing timestamp")
        bad = ~is_num & ~missing & (st != js.T_OK)
        for i in np.flatnonzero(bad).tolist():
            text = bytes(buf[starts[i] : ends[i]]).decode("utf-8", "replace")
            text = text if len(text) <= 60 else text[:57] + "..."
            why = _T_REASON.get(int(st[i]), "unreadable")
            self.report.skipped.append((int(rows[i]), f"unparseable timestamp {text!r} ({why})"))
        return out, ok

    def from_numbers(self, s: pl.Series, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer or float epoch numbers -> (ms, ok)."""
        missing = s.is_null().to_numpy()
        if s.dtype.is_float():
            bad = s.is_nan() | s.is_infinite()
            missing |= bad.fill_null(True).to_numpy()
            v = s.fill_null(0).fill_nan(0).to_numpy()
        else:
            v = s.fill_null(0).to_numpy()
        unit = self.choose_unit(np.asarray(v[~missing], dtype=np.float64))
        shift = UNITS[unit]
        out = np.zeros(len(s), dtype=np.int64)
        ok = ~missing
        if s.dtype.is_integer():
            vi = v.astype(np.int64)
            if shift >= 0:
                f = 10**shift
                fits = np.abs(vi) <= np.iinfo(np.int64).max // f
                out = vi * np.where(fits, f, 0)
            else:
                fits = np.ones(len(vi), dtype=bool)
                out = np.floor_divide(vi, 10 ** (-shift))
        else:
            vf = np.where(missing, 0.0, v.astype(np.float64)) * 10.0**shift
            fits = np.abs(vf) < 9.2e18
            out = np.floor(np.where(fits, vf, 0.0)).astype(np.int64)
        self._skip(rows, missing & s.is_null().to_numpy(), "missing timestamp")
        self._skip(rows, missing & ~s.is_null().to_numpy(), "timestamp is NaN or infinite")
        self._skip(rows, ~missing & ~fits, "epoch number out of int64 milliseconds range")
        return out, ok & fits

    def from_datetimes(self, s: pl.Series, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Native Date / Datetime values -> (ms, ok)."""
        missing = s.is_null().to_numpy()
        if s.dtype == pl.Date:
            days = s.cast(pl.Int32).fill_null(0).to_numpy().astype(np.int64)
            local = days * 86_400_000
            zoned = False
        else:
            zoned = getattr(s.dtype, "time_zone", None) is not None
            local = s.dt.epoch("ms").fill_null(0).to_numpy().astype(np.int64)
        out, ok = local.copy(), ~missing
        if not zoned and (~missing).any():
            self.naive += int((~missing).sum())
            idx = np.flatnonzero(~missing)
            ms, good = self._localize(local[idx])
            out[idx] = ms
            ok[idx[~good]] = False
            self._skip(rows[idx], ~good, f"ambiguous or non-existent local time in {self.tz} "
                       "(a DST change)")  # fmt: skip
        self._skip(rows, missing, "missing timestamp")
        return out, ok

    def _localize(self, local_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Naive wall-clock ms -> UTC ms (UTC unless ``tz``); DST gaps and repeats fail."""
        if self.tz is None or self.tz.upper() == "UTC":
            return local_ms, np.ones(len(local_ms), dtype=bool)
        utc = (
            pl.Series(local_ms, dtype=pl.Int64)
            .cast(pl.Datetime("ms"))
            .dt.replace_time_zone(self.tz, ambiguous="null", non_existent="null")
            .dt.epoch("ms")
        )
        good = utc.is_not_null().to_numpy()
        return utc.fill_null(0).to_numpy().astype(np.int64), good

    def _skip(self, rows: np.ndarray, mask: np.ndarray, why: str) -> None:
        self.report.skipped.extend((int(r), why) for r in rows[mask].tolist())

    def finish(self) -> None:
        if self.naive:
            zone = self.tz or "UTC"
            self.report.notes.append(
                f"{self.naive} timestamps without a UTC offset taken as {zone}")


def _string_buffer(s: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All strings of ``s`` in one byte buffer with start/end offsets (nulls are empty)."""
    s = s.fill_null("")
    lens = s.str.len_bytes().to_numpy().astype(np.int64)
    ends = np.cumsum(lens + 1) - 1
    starts = ends - lens
    text = s.str.join("\n").item() if len(s) else ""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8), starts, ends


# --- readers -----------------------------------------------------------------------------------
def _columns(path: Path, fmt: str, cols: list[str]) -> pl.DataFrame:
    try:
        if fmt == "parquet":
            schema = pl.read_parquet_schema(path)
            _check_columns(path, cols, list(schema))
            return pl.read_parquet(path, columns=cols)
        sep = "\t" if fmt == "tsv" else ","
        header = pl.read_csv(path, n_rows=0, separator=sep, infer_schema=False).columns
        _check_columns(path, cols, header)
        return pl.read_csv(path, columns=cols, separator=sep, infer_schema=False,
                           truncate_ragged_lines=True)  # fmt: skip
    except (pl.exceptions.ComputeError, OSError) as e:
        raise TableError(f"{path}: cannot read as {fmt}: {e}") from None


def _check_columns(path: Path, wanted: list[str], have: list[str]) -> None:
    for c in wanted:
        if c not in have:
            raise TableError(f"{path}: no column {c!r} (columns: {', '.join(have)})")


_NDJSON_ROLES = np.array([js.ROLE_TOP, js.ROLE_TOP], dtype=np.int8)


def _ndjson(path: Path, time: str, model: str | None, times: _Times, rep: IntakeDetails):
    """NDJSON through the jitted line scanner: malformed lines are skipped, not fatal."""
    keys = [time, model or time]
    kbuf, koff, klut = js.encode_keys(keys)
    t_parts, m_parts, l_parts = [], [], []
    names: dict[str, int] = {}
    line0 = 0
    try:
        for batch in read_batches(path):
            buf = np.frombuffer(batch.data, dtype=np.uint8)
            ls, le, status, err, errcol, vs, ve, vk = js.scan_lines(buf, kbuf, koff, klut,
                                                                    _NDJSON_ROLES)  # fmt: skip
            n = len(status)
            lines = np.arange(line0 + 1, line0 + n + 1, dtype=np.int64)
            line0 += n
            rep.lines_read += n
            blank = status == js.L_BLANK
            rep.ignored += int(blank.sum())
            rep.ignored_lines = np.concatenate([rep.ignored_lines, lines[blank]])
            for i in np.flatnonzero((status != js.L_OBJECT) & ~blank).tolist():
                why = ("malformed JSON" if status[i] == js.L_MALFORMED
                       else "valid JSON but not an object")  # fmt: skip
                rep.skipped.append((int(lines[i]), why))
            obj = status == js.L_OBJECT
            tk = vk[0]
            t_ms = np.zeros(n, dtype=np.int64)
            t_ok = np.zeros(n, dtype=bool)
            rows_missing = obj & ((tk == js.K_ABSENT) | (tk == js.K_NULL))
            times._skip(lines, rows_missing, "missing timestamp")
            bad_kind = obj & ((tk == js.K_OBJ) | (tk == js.K_ARR) | (tk == js.K_TRUE)
                              | (tk == js.K_FALSE) | (tk == js.K_STR_ESC))  # fmt: skip
            times._skip(lines, bad_kind, "unparseable timestamp (not a string or number)")
            for kinds, inner in (((js.K_NUM,), 0), ((js.K_STR,), 1)):
                sel = obj & np.isin(tk, kinds)
                if not sel.any():
                    continue
                idx = np.flatnonzero(sel)
                s, e = vs[0][idx] + inner, ve[0][idx] - inner
                ms, ok = times.from_buffer(buf, s, e, np.zeros(len(idx), dtype=bool), lines[idx])
                t_ms[idx], t_ok[idx] = ms, ok
            if model is None:
                use = obj & t_ok
                codes = np.zeros(n, dtype=np.int32)
            else:
                mk = vk[1]
                m_ok = (mk == js.K_STR) | (mk == js.K_STR_ESC) | (mk == js.K_NUM)
                times._skip(lines, obj & t_ok & ~m_ok, "missing model")
                use = obj & t_ok & m_ok
                local, rs, re_ = js.intern(buf, vs[1], ve[1], use)
                from .concerto_log import _decode

                lut = np.array([names.setdefault(_decode(bytes(buf[a:b])), len(names))
                                for a, b in zip(rs.tolist(), re_.tolist())], dtype=np.int32)
                codes = np.where(local >= 0, lut[np.maximum(local, 0)] if len(lut) else 0, -1)
            rep.rows_used += int(use.sum())
            t_parts.append(t_ms[use])
            m_parts.append(codes[use].astype(np.int32))
            l_parts.append(lines[use])
    except TruncatedStream as e:
        rep.skipped.append((line0 + 1, str(e).split(": ", 1)[1]))
    name_list = list(names) if model is not None else []
    cat = (lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dtype=dt))
    return cat(t_parts, np.int64), cat(m_parts, np.int32), cat(l_parts, np.int64), name_list


def read_request_table(
    path,
    *,
    time: str,
    model: str | None = None,
    model_name: str | None = None,
    tz: str | None = None,
    unit: str | None = None,
    fmt: str | None = None,
) -> Trace:
    """A request log table as a ``Trace`` (``line`` = row number, ``report`` = the account).

    ``time`` and ``model`` name the columns (keys, for NDJSON); with ``model=None`` every row
    asks for ``model_name`` (a one-model trace, e.g. one service of the Azure trace). ``tz``: the
    zone of naive date-times (default UTC). ``unit``: s / ms / us / ns for epoch numbers
    (guessed from magnitudes if not given). ``fmt``: csv / tsv / parquet / ndjson (default:
    from the file name).
    """
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: no such file")
    if model is None and model_name is None:
        raise TableError(f"{path}: name the model column (model=) or give model_name=")
    fmt = _format_of(path, fmt)
    rep = IntakeDetails(source=str(path), used_what="requests")
    times = _Times(unit, tz, rep)

    if fmt == "ndjson":
        t_ms, codes, rows, names = _ndjson(path, time, model, times, rep)
        if model is None:
            names = [model_name]
        times.finish()
        rep.skipped.sort(key=lambda x: x[0])
        order = np.argsort(t_ms, kind="stable")
        return Trace(t_ms[order].astype(TIME_DTYPE), codes[order].astype(CODE_DTYPE),
                     tuple(names), report=rep, line=rows[order])  # fmt: skip

    cols = [time] + ([model] if model is not None else [])
    df = _columns(path, fmt, cols)
    n = df.height
    rep.lines_read = n
    t_out = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    first = 2 if fmt in ("csv", "tsv") else 1  # CSV: file lines, the header being line 1
    rows_all = np.arange(first, n + first, dtype=np.int64)
    tcol = df[time]
    for lo in range(0, n, _SLICE):
        part, rows = tcol.slice(lo, _SLICE), rows_all[lo : lo + _SLICE]
        if part.dtype in (pl.Date,) or isinstance(part.dtype, pl.Datetime):
            ms, good = times.from_datetimes(part, rows)
        elif part.dtype.is_numeric():
            ms, good = times.from_numbers(part, rows)
        else:
            ms, good = times.from_strings(part, rows)
        t_out[lo : lo + len(ms)], ok[lo : lo + len(ms)] = ms, good
    if model is not None:
        mcol = df[model].cast(pl.String)
        m_missing = mcol.is_null().to_numpy()
        times._skip(rows_all, ok & m_missing, "missing model")
        ok &= ~m_missing
        models = mcol.filter(pl.Series(ok))
    else:
        models = pl.Series([model_name] * int(ok.sum()), dtype=pl.String)
    times.finish()
    rep.rows_used = int(ok.sum())
    rep.skipped.sort(key=lambda x: x[0])
    return Trace.from_columns(t_out[ok], models, report=rep, line=rows_all[ok])


def merge_traces(traces, source: str = "") -> Trace:
    """Several traces as one: names in order of first appearance, stable sort by instant.

    Ties keep the order of ``traces``. Line numbers stay those of each source; the merged
    ``report`` keeps each source's account in ``files``.
    """
    traces = list(traces)
    names: dict[str, int] = {}
    t_parts, m_parts, l_parts = [], [], []
    for tr in traces:
        lut = np.array([names.setdefault(n, len(names)) for n in tr.names], dtype=CODE_DTYPE)
        t_parts.append(tr.t_ms)
        m_parts.append(lut[tr.model] if len(lut) else tr.model)
        l_parts.append(tr.line if tr.line is not None else np.zeros(len(tr), dtype=np.int64))
    t = np.concatenate(t_parts) if t_parts else np.zeros(0, dtype=TIME_DTYPE)
    m = np.concatenate(m_parts) if m_parts else np.zeros(0, dtype=CODE_DTYPE)
    lines = np.concatenate(l_parts) if l_parts else np.zeros(0, dtype=np.int64)
    order = np.argsort(t, kind="stable")
    reports = [tr.report if isinstance(tr.report, IntakeDetails) else
               IntakeDetails(**vars(tr.report)) if tr.report is not None else
               IntakeDetails(lines_read=len(tr), rows_used=len(tr)) for tr in traces]  # fmt: skip
    report = IntakeDetails.combine(reports, source=source) if reports else IntakeDetails()
    return Trace(t[order], m[order], tuple(names), report=report, line=lines[order])


__all__ = ["TableError", "UNITS", "merge_traces", "read_request_table"]
