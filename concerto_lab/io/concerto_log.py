"""Concerto's JSON logs (``--log-format json``): every event as a table row, requests as a Trace.

Each line is one tracing JSON object::

    {"timestamp":"2024-12-03T00:00:06.854421Z","level":"INFO","fields":{"message":"incoming
    chat completion","model":"qwen2.5-7b-instruct","stream":true},"target":"concerto_api::..."}

Requests are the ``"incoming chat completion"`` events. Real logs also hold engine output and
panics (plain text), truncated last lines, other layouts (``flatten_event`` puts the event's
fields at the top level; span objects may carry keys named like event fields), any number of
fraction digits and UTC offsets. Every line is accounted for: used, ignored (blank lines, other
events) or skipped with its number and a one-line reason; nothing is fatal unless ``strict``.

Rules (issue 5, cases B15-B18):

* event fields come from ``fields`` or, when a line has no ``fields``, from the top level, never
  from ``span``/``spans``; duplicate keys: the last one wins;
* ``timestamp`` is RFC 3339 with any number of fraction digits (a decimal fraction; sub-ms
  digits are truncated) and ``Z`` or a numeric offset, converted to UTC epoch ms (int64);
* files are read in batches (bounded memory) by a jitted scanner (``json_scan``); rotated and
  compressed files are one log, oldest file first, then a stable sort by instant.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from ..model.dtypes import CODE_DTYPE, TIME_DTYPE
from ..model.trace import Trace
from . import json_scan as js
from .intake import IntakeDetails
from .log_files import BATCH_BYTES, TruncatedStream, expand_log_paths, read_batches

REQUEST_MESSAGE = "incoming chat completion"
_REQUEST_BYTES = REQUEST_MESSAGE.encode()
_REQUEST_LIT = np.frombuffer(_REQUEST_BYTES, dtype=np.uint8).copy()

#: Event columns of the table ``read_log_events`` returns (strings, null where absent).
STRING_COLUMNS = ("level", "message", "model", "model_id", "gpu_id", "victim", "reason", "target")
#: Integer event fields (null where absent or not an integer).
INT_COLUMNS = ("pid", "port")

# The first four keys are all a request needs; read_concerto_log scans for those alone.
_KEYS = ("timestamp", "fields", "message", "model", "level", "target", "model_id", "gpu_id",
         "victim", "reason", "pid", "port")  # fmt: skip
_ROLE = {"timestamp": js.ROLE_TOP, "fields": js.ROLE_FIELDS, "level": js.ROLE_TOP,
         "target": js.ROLE_TOP}  # fmt: skip
_ROLES = np.array([_ROLE.get(k, js.ROLE_EVENT) for k in _KEYS], dtype=np.int8)
_SCAN = {
    True: (*js.encode_keys(_KEYS), _ROLES),  # events: every column
    False: (*js.encode_keys(_KEYS[:4]), _ROLES[:4].copy()),  # requests only
}
_COL = {k: i for i, k in enumerate(_KEYS)}

_NO_INT = np.iinfo(np.int64).min  # null marker of the integer columns while batches accumulate

_MALFORMED = {
    js.E_UNEXPECTED: "malformed JSON: unexpected character at column {col}",
    js.E_TRUNCATED: "malformed JSON: the line ends inside a value (truncated line?)",
    js.E_TRAILING: "malformed JSON: extra text after the object at column {col}",
    js.E_DEPTH: f"malformed JSON: nested deeper than {js.MAX_DEPTH} levels",
    js.E_CONTROL: "malformed JSON: raw control character inside a string at column {col}",
    js.E_ESCAPE: "malformed JSON: invalid escape in a string at column {col}",
}


class LogError(ValueError):
    """A request-like line that ``strict`` reading refuses, named by file and line."""


# --- decoding the few distinct strings ---------------------------------------------------------
def _decode(raw: bytes) -> str | None:
    """The text of one JSON scalar token (a string decoded; a number or boolean as written)."""
    if raw[:1] == b'"':
        if b"\\" not in raw:
            return raw[1:-1].decode("utf-8", "replace")
        text = json.loads(raw.decode("utf-8", "replace"))
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate escape (\ud800): keep the rest
            text = text.encode("utf-8", "replace").decode("utf-8")
        return text
    if raw == b"null" or raw[:1] in (b"{", b"["):
        return None
    return raw.decode("ascii")


class _Names:
    """A growing dictionary of one column's values (global codes across batches and files)."""

    def __init__(self):
        self.code: dict[str, int] = {}
        self.names: list[str] = []

    def add(self, name: str) -> int:
        c = self.code.get(name)
        if c is None:
            c = self.code[name] = len(self.names)
            self.names.append(name)
        return c

    def globalize(self, buf, interned) -> np.ndarray:
        """Global codes (int32, -1 = null) from one part's ``js.intern`` result."""
        local, rs, re_ = interned
        if len(rs) == 0:
            return local
        data = buf.data
        lut = np.empty(len(rs), dtype=np.int32)
        for k in range(len(rs)):
            name = _decode(bytes(data[rs[k] : re_[k]]))
            lut[k] = -1 if name is None else self.add(name)
        out = np.full(local.shape, -1, dtype=np.int32)
        ok = local >= 0
        out[ok] = lut[local[ok]]
        return out

    def series(self, codes: np.ndarray, name: str) -> pl.Series:
        idx = pl.Series(codes, dtype=pl.Int32).cast(pl.UInt32, strict=False)  # -1 -> null
        return pl.Series(name, self.names, dtype=pl.String).gather(idx)


# --- the jitted part of a batch (runs in worker threads: every step releases the GIL) -----------
def _scan_part(buf: np.ndarray, events: bool) -> dict:
    ls, le, status, err, errcol, vs, ve, vk = js.scan_lines(buf, *_SCAN[events])
    ts, msg, model = _COL["timestamp"], _COL["message"], _COL["model"]
    t_ms, t_status = js.parse_log_times(buf, vs[ts], ve[ts], vk[ts])
    is_obj = status == js.L_OBJECT
    t_ok = t_status == js.T_OK
    model_ok = (vk[model] == js.K_STR) | (vk[model] == js.K_STR_ESC)
    part = dict(buf=buf, ls=ls, le=le, status=status, err=err, errcol=errcol, vs=vs, ve=ve, vk=vk,
                t_ms=t_ms, t_status=t_status, is_obj=is_obj, t_ok=t_ok, model_ok=model_ok)
    if events:
        for name in STRING_COLUMNS:
            c = _COL[name]
            mask = is_obj & _scalar(vk[c]) & (t_ok | (c == msg))
            part[name] = js.intern(buf, vs[c], ve[c], mask)
        for name in INT_COLUMNS:
            c = _COL[name]
            part[name] = js.parse_ints(buf, vs[c], ve[c], vk[c])
    else:
        plain = js.equals_literal(buf, vs[msg], ve[msg], vk[msg], _REQUEST_LIT) & is_obj
        escaped = is_obj & (vk[msg] == js.K_STR_ESC)  # decoded in Python: rare
        part["plain_req"], part["escaped_msg"] = plain, escaped
        mask = (plain | escaped) & t_ok & model_ok
        part["model"] = js.intern(buf, vs[model], ve[model], mask)
    return part


_POOL = None
#: Batches smaller than this are scanned on one thread (splitting costs more than it saves).
_SPLIT_MIN_BYTES = 4 * 2**20


def _workers() -> int:
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 4))
    except AttributeError:
        return max(1, min(os.cpu_count() or 1, 4))


def _next_newline(data: memoryview, start: int) -> int:
    step = 1 << 16
    for lo in range(start, len(data), step):
        k = data[lo : lo + step].tobytes().find(b"\n")
        if k >= 0:
            return lo + k
    return -1


def _scan_batch(data: memoryview, events: bool) -> list[dict]:
    """Scan one batch, split at line boundaries across the CPU cores."""
    global _POOL
    buf = np.frombuffer(data, dtype=np.uint8)
    k = _workers()
    if k == 1 or len(buf) < _SPLIT_MIN_BYTES:
        return [_scan_part(buf, events)]
    cuts = [0]
    for j in range(1, k):
        nl = _next_newline(data, max(cuts[-1], len(buf) * j // k))
        if nl < 0 or nl + 1 >= len(buf):
            break
        cuts.append(nl + 1)
    cuts.append(len(buf))
    if len(cuts) == 2:
        return [_scan_part(buf, events)]
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=k, thread_name_prefix="concerto-log")
    futures = [_POOL.submit(_scan_part, buf[a:b], events) for a, b in zip(cuts, cuts[1:])]
    return [f.result() for f in futures]


# --- one file, batch by batch ------------------------------------------------------------------
@dataclass
class _Reader:
    """Accumulates one log (several files) in compact columns, batch by batch."""

    events: bool  # keep every event (read_log_events) or only requests (read_concerto_log)
    strict: bool
    messages: frozenset[str] | None = None
    names: dict[str, _Names] = field(default_factory=lambda: {c: _Names() for c in STRING_COLUMNS})
    parts: list[dict] = field(default_factory=list)
    reports: list[IntakeDetails] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def read_file(self, path: Path, file_no: int, batch_bytes: int, progress=None) -> None:
        rep = IntakeDetails(source=str(path))
        ignored: list[np.ndarray] = []
        last_line = 0
        try:
            for batch in read_batches(path, batch_bytes):
                for part in _scan_batch(batch.data, self.events):
                    last_line = self._part(part, last_line + 1, path, file_no, rep, ignored)
                if progress is not None:
                    progress(batch.done_bytes)
        except TruncatedStream as e:
            why = str(e).split(": ", 1)[1]
            self._skip(rep, path, last_line + 1, why, request_like=True)
        rep.ignored_lines = np.concatenate(ignored) if ignored else rep.ignored_lines
        rep.used_what = "events" if self.events else "requests"
        self.reports.append(rep)

    def _skip(self, rep: IntakeDetails, path: Path, line: int, why: str, request_like: bool):
        if self.strict and request_like:
            raise LogError(f"{path}: line {line}: {why}")
        rep.skipped.append((line, why))

    def _part(self, part: dict, first_line: int, path, file_no, rep: IntakeDetails, ignored):
        buf, status = part["buf"], part["status"]
        n = len(status)
        lines = np.arange(first_line, first_line + n, dtype=np.int64)
        is_obj, t_ok, model_ok = part["is_obj"], part["t_ok"], part["model_ok"]
        if self.events:
            msg = self.names["message"].globalize(buf, part["message"])
            is_req = is_obj & (msg == self.names["message"].code.get(REQUEST_MESSAGE, -2))
            used = is_obj & t_ok & (~is_req | model_ok)
            ignore = status == js.L_BLANK
            if self.messages is not None:
                keep = [self.names["message"].code[m] for m in self.messages
                        if m in self.names["message"].code]  # fmt: skip
                wanted = np.isin(msg, np.asarray(keep, dtype=np.int32))
                ignore = ignore | (used & ~wanted)  # valid events left out: ignored, not skipped
                used &= wanted
        else:
            is_req = part["plain_req"].copy()
            for i in np.flatnonzero(part["escaped_msg"]).tolist():
                s, e = part["vs"][_COL["message"], i], part["ve"][_COL["message"], i]
                is_req[i] = _decode(bytes(buf.data[s:e])) == REQUEST_MESSAGE
            used = is_req & t_ok & model_ok
            ignore = (status == js.L_BLANK) | (is_obj & ~is_req)
        bad = ~(used | ignore)

        for i in np.flatnonzero(bad).tolist():
            why, request_like = _why(part, i, bool(is_req[i]))
            self._skip(rep, path, int(lines[i]), why, request_like)
        rep.lines_read += n
        rep.rows_used += int(used.sum())
        rep.ignored += int(ignore.sum())
        ignored.append(lines[ignore])

        out = {"t_ms": part["t_ms"][used], "line": lines[used]}
        if self.events:
            out["file"] = np.full(int(used.sum()), file_no, dtype=np.int32)
            out["message"] = msg[used]
            for name in STRING_COLUMNS:
                if name != "message":
                    out[name] = self.names[name].globalize(buf, part[name])[used]
            for name in INT_COLUMNS:
                v, ok = part[name]
                out[name] = np.where(ok, v, _NO_INT)[used]
        else:
            out["model"] = self.names["model"].globalize(buf, part["model"])[used]
        self.parts.append(out)
        return int(lines[-1]) if n else first_line - 1

    # --- results -------------------------------------------------------------------------------
    def report(self) -> IntakeDetails:
        return IntakeDetails.combine(self.reports)

    def columns(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Concatenated columns and the stable order by instant (file order breaks ties)."""
        keys = self.parts[0].keys() if self.parts else ("t_ms", "line")
        cols = {k: np.concatenate([p[k] for p in self.parts]) if self.parts else
                np.zeros(0, dtype=np.int64) for k in keys}  # fmt: skip
        order = np.argsort(cols["t_ms"], kind="stable")
        return cols, order


def _why(part: dict, i: int, is_req: bool) -> tuple[str, bool]:
    """The one-line reason a line was skipped, and whether it looks like a request."""
    buf, st = part["buf"], int(part["status"][i])
    if st != js.L_OBJECT:
        raw = bytes(buf.data[part["ls"][i] : part["le"][i]])
        like = _REQUEST_BYTES in raw
        if st == js.L_MALFORMED:
            err = int(part["err"][i])
            why = _MALFORMED[err].format(col=int(part["errcol"][i]))
            # an object cut short may have been a request: strict reading must not pass it
            cut_object = raw.lstrip(b"\xef\xbb\xbf \t").startswith(b"{")
            like = like or (err == js.E_TRUNCATED and cut_object)
        else:
            why = f"valid JSON but not an object ({js.NOT_OBJECT_NAMES[st]})"
        return why, like
    ts = int(part["t_status"][i])
    if ts != js.T_OK:
        what = "request" if is_req else "event"
        if ts == js.T_MISSING:
            return f"missing timestamp ({what} line)", is_req
        c = _COL["timestamp"]
        s, e, k = part["vs"][c, i], part["ve"][c, i], int(part["vk"][c, i])
        text = bytes(buf.data[s:e]).decode("utf-8", "replace")
        text = text if len(text) <= 60 else text[:57] + "..."
        detail = {
            js.T_NOT_STRING: f" (a JSON {js.KIND_NAMES[k]}, expected an RFC 3339 string)",
            js.T_NO_ZONE: " (no UTC offset)",
            js.T_RANGE: " (a field is out of range)",
        }.get(ts, "")
        return f"unparseable timestamp {text}{detail} ({what} line)", is_req
    k = int(part["vk"][_COL["model"], i])
    if k == js.K_ABSENT:
        return "missing model (request line)", True
    return f"missing model (request line; model is a JSON {js.KIND_NAMES[k]}, not a string)", True


def _scalar(kind: np.ndarray) -> np.ndarray:
    """Kinds a string column keeps: strings, and numbers/booleans as their JSON text."""
    return (kind >= js.K_STR) & (kind <= js.K_FALSE)


def _read(paths, *, events: bool, strict: bool, messages=None, batch_bytes=BATCH_BYTES,
          progress: bool = False) -> _Reader:  # fmt: skip
    files = expand_log_paths(paths)
    reader = _Reader(events=events, strict=strict,
                     messages=None if messages is None else frozenset(messages))  # fmt: skip
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(f.stat().st_size for f in files), unit="B", unit_scale=True,
                   desc="reading log", file=sys.stderr)  # fmt: skip
    done = 0
    try:
        for no, path in enumerate(files):
            def tick(pos, base=done):
                bar.update(base + pos - bar.n)

            reader.read_file(path, no, batch_bytes, tick if bar is not None else None)
            done += path.stat().st_size
    finally:
        if bar is not None:
            bar.close()
    reader.files = files
    return reader


# --- public API --------------------------------------------------------------------------------
def read_concerto_log(paths, *, strict: bool = False, batch_bytes: int = BATCH_BYTES,
                      progress: bool = False) -> Trace:  # fmt: skip
    """The requests of a Concerto JSON log as a ``Trace`` (with ``line`` and ``report``).

    ``paths``: a file (plain, ``.gz`` or ``.zst``), a directory or glob of rotated files, or a
    list of them; rotated files are read oldest first as one log. ``trace.line[i]`` is the
    request's line in its file; ``trace.report`` (``IntakeDetails``) accounts for every line.
    ``strict=True`` raises ``LogError`` (file and line) at the first skipped request-like line.
    """
    r = _read(paths, events=False, strict=strict, batch_bytes=batch_bytes, progress=progress)
    cols, order = r.columns()
    names = r.names["model"].names
    model = cols["model"] if "model" in cols else np.zeros(0, dtype=CODE_DTYPE)
    return Trace(
        cols["t_ms"][order].astype(TIME_DTYPE, copy=False),
        model[order].astype(CODE_DTYPE, copy=False),
        tuple(names),
        report=r.report(),
        line=cols["line"][order],
    )


def read_log_events(
    paths, *, strict: bool = False, messages=None, batch_bytes: int = BATCH_BYTES
) -> tuple[pl.DataFrame, IntakeDetails]:
    """Every usable event of a Concerto JSON log as one polars DataFrame, plus the account.

    Columns: ``file`` (path), ``line`` (1-based, in its file), ``t_ms`` (int64 UTC epoch ms),
    ``level``, ``message``, ``model``, ``model_id``, ``gpu_id``, ``victim``, ``reason``,
    ``target`` (strings, null where absent), ``pid``, ``port`` (int64, null where absent).
    Rows are in instant order (stable: file order breaks ties). An event is usable when its
    line is a JSON object with a valid timestamp (requests also need a string ``model``).
    ``messages`` keeps only those events (the others count as ignored), to save memory.
    """
    r = _read(paths, events=True, strict=strict, messages=messages, batch_bytes=batch_bytes)
    cols, order = r.columns()
    files = [str(f) for f in r.files]
    n = len(order)
    data = {
        "file": pl.Series("file", files, dtype=pl.String).gather(
            pl.Series(cols.get("file", np.zeros(n, np.int32))[order], dtype=pl.UInt32)),
        "line": pl.Series("line", cols["line"][order], dtype=pl.Int64),
        "t_ms": pl.Series("t_ms", cols["t_ms"][order], dtype=pl.Int64),
    }
    for name in STRING_COLUMNS:
        codes = cols[name][order] if name in cols else np.full(n, -1, np.int32)
        data[name] = r.names[name].series(codes, name)
    for name in INT_COLUMNS:
        v = cols[name][order] if name in cols else np.full(n, _NO_INT, dtype=np.int64)
        data[name] = pl.Series(name, v, dtype=pl.Int64).replace(_NO_INT, None)
    frame = pl.DataFrame(data)
    order_cols = ["file", "line", "t_ms", *STRING_COLUMNS, *INT_COLUMNS]
    return frame.select(order_cols), r.report()


__all__ = ["LogError", "REQUEST_MESSAGE", "read_concerto_log", "read_log_events"]
