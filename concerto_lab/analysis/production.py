"""What production did, read off a Concerto JSON log: start-ups, backend crashes, and decisions.

A replay of a production log has to start where Concerto started (the NVML snapshot of each
start-up, no model loaded), follow its restarts and crashes, and can then be held against the
decisions Concerto logged. This module turns the log's event table (``io.concerto_log``) into:

* ``Restart`` events, one per start-up after the first (each with the start-up snapshot that
  belongs to it; the first start is the initial state),
* ``Crash`` events (``backend unhealthy; dropping``, field ``model_id``),
* one logged decision per request: ``load`` (``launching backend``, ``gpu_id`` ``"gpu:N"``, with
  the ``evicting backend`` victims before it, in order), ``reject`` (``routing rejected``,
  ``reason``), or ``route`` (nothing logged at ``info``),
* each launch's life (its ``backend ready`` line, if any), so a fidelity report can name what a
  replay cannot see: loads in flight, launches that never became ready.

Events are placed by log line, not by time: ``pos`` is the number of requests logged before them.
All of it is polars joins over the event table; nothing here runs Python per request.
"""

from __future__ import annotations

import dataclasses

import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import polars as pl

from ..model.cluster import ConfigError, Crash, Gpu, Restart, RoutingConfig
from ..model.trace import IntakeReport, Trace

REQUEST = "incoming chat completion"
START_MESSAGES = ("concerto ready to serve", "concerto listening")
CRASH = "backend unhealthy; dropping"
LAUNCH = "launching backend"
EVICT = "evicting backend"
REJECT = "routing rejected"
READY = "backend ready"

_GPU_ID = re.compile(r"^\s*(?:gpu:)?(\d+)\s*$")


@dataclass(frozen=True)
class Start:
    """One Concerto start-up seen in the log."""

    number: int  # 1-based, in log order
    line: int
    t_ms: int
    pos: int  # requests logged before it
    snapshot: int | None  # index into the snapshots given, None if there was none for it
    seq: int = 0  # position in log order over all files (file number << 40 | line)


@dataclass(eq=False)
class Production:
    """A production log as a replay needs it; ``replay()`` runs it with restarts and crashes.

    ``logged`` has one row per request (trace order): ``i``, ``t_ms``, ``model``, ``decision``
    (route/load/reject), ``gpu`` (loads only: routes are not logged at ``info``), ``evict``,
    ``reason`` and ``log_line``. ``launches`` has one row per ``launching backend`` line with
    the line of its ``backend ready`` (null if it never became ready). ``notes`` says what was
    assumed (missing snapshots, a log that starts mid-run, decision lines without a request).
    """

    trace: Trace
    gpus: tuple[Gpu, ...]
    starts: tuple[Start, ...]
    restarts: tuple[Restart, ...]
    crashes: tuple[Crash, ...]
    logged: pl.DataFrame
    launches: pl.DataFrame
    gpu_ids: tuple[int, ...] = ()
    notes: list[str] = field(default_factory=list)
    report: IntakeReport | None = None

    def __repr__(self) -> str:
        counts = self.logged["decision"].value_counts()
        c = dict(zip(counts["decision"].cast(pl.String), counts["count"]))
        return (
            f"Production({len(self.trace)} requests: {c.get('route', 0)} routed, "
            f"{c.get('load', 0)} loads, {c.get('reject', 0)} rejected; {len(self.starts)} "
            f"start(s), {len(self.crashes)} crash(es), {len(self.gpus)} GPUs)"
        )

    def events(self, *, restarts: bool = True, crashes: bool = True) -> tuple:
        """The control events of a faithful replay; switch either kind off for a what-if."""
        out = []
        if restarts:
            out += self.restarts
        if crashes:
            out += self.crashes
        return tuple(sorted(out, key=lambda e: (e.pos, e.t_ms)))

    def replay(
        self,
        config: RoutingConfig,
        *,
        restarts: bool = True,
        crashes: bool = True,
        events: Iterable = (),
        gpus: Sequence | None = None,
        **what_if,
    ):
        """``replay`` from production's start-up state, with its restarts and crashes.

        ``events`` are added to the production ones; ``what_if`` goes to ``replay``
        (``policy=``, ``headroom=``, ``pins=``, ``fixes=``, ``warn=``).
        """
        from ..replay import replay

        evs = self.events(restarts=restarts, crashes=crashes) + tuple(events)
        return replay(self.trace, config, self.gpus if gpus is None else gpus, events=evs,
                      **what_if)  # fmt: skip

    def decisions(self) -> pl.DataFrame:
        """The logged decisions in the oracle layout, plus ``log_line``."""
        return self.logged.select("i", "t_ms", "model", "decision", "gpu", "evict", "reason",
                                  "log_line")  # fmt: skip


# --- building it ---------------------------------------------------------------------------------
def read_production(
    paths,
    snapshots: Sequence[Sequence[Gpu]],
    config: RoutingConfig | None = None,
    *,
    strict: bool = False,
) -> Production:
    """Read a Concerto JSON log (files, directories or globs) and pair it with start-up snapshots.

    ``snapshots[k]`` is the GPU state of the (k+1)-th start in the log (``io.startup`` reads
    them from nvidia-smi CSV, NVML or ``/status``). The log is read once, by
    ``io.concerto_log.read_log_events``; its requests are the trace.
    """
    from ..io.concerto_log import read_log_events
    from ..io.log_files import expand_log_paths

    events, report = read_log_events(paths, strict=strict)
    return production_from_events(
        events, snapshots, gpu_ids=config.gpu_ids if config is not None else (), report=report,
        files=[str(f) for f in expand_log_paths(paths)],
    )  # fmt: skip


_FILE_SHIFT = 40  # seq = file number << 40 | line: one order over rotated files


def production_from_events(
    events: pl.DataFrame,
    snapshots: Sequence[Sequence[Gpu]],
    *,
    gpu_ids: Sequence[int] = (),
    report: IntakeReport | None = None,
    files: Sequence[str] | None = None,
) -> Production:
    """The pure part of ``read_production``, from ``read_log_events``' table (instant order).

    ``files`` is the log's file order (oldest first); by default, order of first appearance.
    """
    if not snapshots or not len(snapshots[0]):
        raise ConfigError(
            "no start-up snapshot: give the GPUs Concerto saw at start-up (--gpus-csv, --nvml "
            "or --status)"
        )
    snapshots = [tuple(s) for s in snapshots]
    n_gpus = len(snapshots[0])
    for k, s in enumerate(snapshots[1:], 2):
        if len(s) != n_gpus:
            raise ConfigError(f"start-up snapshot {k} has {len(s)} GPUs, snapshot 1 has {n_gpus}")
    notes: list[str] = []
    order = list(files) if files else events["file"].unique(maintain_order=True).to_list()
    multi = len(order) > 1
    rank = pl.col("file").replace_strict(order, list(range(len(order))), default=len(order),
                                         return_dtype=pl.Int64)  # fmt: skip
    events = events.with_columns(seq=(rank * (1 << _FILE_SHIFT)) + pl.col("line"))
    ev = events.sort("seq")

    def where(seq: int) -> str:
        line = seq & ((1 << _FILE_SHIFT) - 1)
        return f"{order[seq >> _FILE_SHIFT]}:{line}" if multi else f"log line {line}"

    # Requests in instant order (the table's order), as read_concerto_log makes them.
    req = events.filter((pl.col("message") == REQUEST) & pl.col("model").is_not_null())
    if report is not None:  # the trace's account counts requests; other events are ignored lines
        extra = {"used_what": "requests"} if hasattr(report, "used_what") else {}
        report = dataclasses.replace(report, rows_used=req.height,
                                     ignored=report.ignored + events.height - req.height, **extra)
    trace = Trace.from_columns(req["t_ms"].to_numpy(), req["model"], report=report,
                               line=req["line"].to_numpy())  # fmt: skip
    req_seq = req["seq"].to_numpy()
    in_line_order = bool(len(req_seq) < 2 or np.all(np.diff(req_seq) > 0))
    if not in_line_order:
        notes.append(
            "requests are not in time order in the log: restarts and crashes are placed by "
            "time instead of by line"
        )

    def pos_of(seq: np.ndarray, t_ms: np.ndarray) -> np.ndarray:
        if in_line_order:
            return np.searchsorted(req_seq, seq, side="left")
        return np.searchsorted(trace.t_ms, t_ms, side="left")

    # Start-ups: "ready to serve" and "listening" of one start are adjacent; count it once.
    prev = pl.col("message").shift(1)
    is_start = pl.col("message").is_in(START_MESSAGES)
    starts_df = ev.filter(is_start & ~(prev.is_in(START_MESSAGES).fill_null(False)))
    s_seq = starts_df["seq"].to_numpy()
    s_pos = pos_of(s_seq, starts_df["t_ms"].to_numpy())
    offset = 0
    if len(trace) and (len(s_seq) == 0 or s_pos[0] > 0):
        offset = 1
        notes.append(
            f"the log begins mid-run ({int(s_pos[0]) if len(s_seq) else len(trace)} requests "
            "before its first start-up line): the state before them is assumed empty, with "
            "snapshot 1's GPUs"
        )
    starts, restarts = [], []
    for k, (seq, line, t, pos) in enumerate(zip(s_seq.tolist(), starts_df["line"].to_list(),
                                                starts_df["t_ms"].to_list(), s_pos.tolist())):  # fmt: skip
        snap = k + offset
        have = snap < len(snapshots)
        starts.append(Start(k + 1, line, t, pos, snap if have else None, seq=seq))
        if snap == 0:
            continue  # the initial state
        if not have:
            notes.append(
                f"start {k + 1} ({where(seq)}) has no start-up snapshot of its own: it is "
                "replayed with snapshot 1's GPUs (give one snapshot per start for fidelity)"
            )
        restarts.append(Restart(t, snapshots[snap] if have else (), pos=pos))
    if len(snapshots) > len(starts) + offset:
        notes.append(
            f"{len(snapshots)} snapshots given for {len(starts) + offset} start(s): "
            f"the last {len(snapshots) - len(starts) - offset} are unused"
        )

    cr = ev.filter(pl.col("message") == CRASH)
    for seq in cr.filter(pl.col("model_id").is_null())["seq"].to_list():
        notes.append(f"{where(seq)}: {CRASH!r} without model_id: ignored")
    cr = cr.filter(pl.col("model_id").is_not_null())
    cr_pos = pos_of(cr["seq"].to_numpy(), cr["t_ms"].to_numpy())
    crashes = tuple(
        Crash(t, m, pos=p)
        for t, m, p in zip(cr["t_ms"].to_list(), cr["model_id"].to_list(), cr_pos.tolist())
    )

    logged, launches = _logged_decisions(trace, req, ev, tuple(gpu_ids), n_gpus, notes, where)
    if multi:
        # one logged row per request, in the trace's (instant) order, as ``req`` is
        files = pl.Series("log_file", [str(f) for f in order], dtype=pl.String)
        logged = logged.with_columns(files.gather(req["seq"] // (1 << _FILE_SHIFT)))
    return Production(
        trace=trace,
        gpus=snapshots[0],
        starts=tuple(starts),
        restarts=tuple(restarts),
        crashes=crashes,
        logged=logged,
        launches=launches,
        gpu_ids=tuple(gpu_ids),
        notes=notes,
        report=report,
    )


def _logged_decisions(trace: Trace, req_rows: pl.DataFrame, ev: pl.DataFrame,
                      gpu_ids: tuple[int, ...], n_gpus: int, notes: list[str],
                      where) -> tuple[pl.DataFrame, pl.DataFrame]:  # fmt: skip
    """Joins on ``seq`` (log order); ``log_line`` and the other ``*_line`` columns are file lines."""
    n = len(trace)
    req = pl.DataFrame(
        {
            "i": np.arange(n, dtype=np.int64),
            "t_ms": trace.t_ms,
            "model": pl.Series(trace.names, dtype=pl.String).gather(trace.model),
            "log_line": req_rows["line"],
            "seq": req_rows["seq"],
        }
    )
    req_by_seq = req.sort("seq")
    key = pl.coalesce("model", "model_id")

    # The decisive lines (launch, reject) go to the latest earlier request for the same model.
    decisive = (
        ev.filter(pl.col("message").is_in([LAUNCH, REJECT]))
        .select("seq", "line", "t_ms", "message", pl.col("model").alias("d_model"), "gpu_id",
                "reason")
        .join_asof(
            req_by_seq.select(pl.col("seq").alias("req_seq"), pl.col("model").alias("d_model"), "i"),
            left_on="seq", right_on="req_seq", by="d_model", strategy="backward",
            check_sortedness=False,  # both sides are sorted by seq; polars cannot check with `by`
        )
        .join_asof(
            req_by_seq.select(pl.col("seq").alias("prev_seq"), pl.col("i").alias("prev_i")),
            left_on="seq", right_on="prev_seq", strategy="backward",
        )
    )  # fmt: skip
    orphans = decisive.filter(pl.col("i").is_null())
    for seq, msg, model in orphans.select("seq", "message", "d_model").head(20).iter_rows():
        notes.append(f"{where(seq)}: {msg!r} for {model!r} follows no request for it: ignored")
    if orphans.height > 20:
        notes.append(f"... {orphans.height - 20} more decision lines without a request")
    interleaved = decisive.filter(pl.col("i").is_not_null() & (pl.col("i") != pl.col("prev_i")))
    if interleaved.height:
        notes.append(
            f"{interleaved.height} decision line(s) follow another request's line (concurrent "
            f"requests); each was given to the latest earlier request for its model, first at "
            f"{where(interleaved['seq'][0])}"
        )
    decisive = decisive.filter(pl.col("i").is_not_null())
    dup = decisive.filter(pl.col("i").is_duplicated())
    if dup.height:
        per = dup.group_by("i").agg(pl.col("line").sort()).sort("i")
        for i, lines in per.head(5).iter_rows():
            notes.append(f"request {i} has {len(lines)} decision lines (lines {lines}): the "
                         "first counts")  # fmt: skip
        if per.height > 5:
            notes.append(f"... {per.height - 5} more requests with several decision lines")
        decisive = decisive.unique("i", keep="first", maintain_order=True)

    # GPU of a launch: "gpu:N" is a device id; replay positions follow the config's [[gpus]].
    dev = pl.col("gpu_id").str.extract(r"^\s*(?:gpu:)?(\d+)\s*$").cast(pl.Int64, strict=False)
    if gpu_ids:
        dev = dev.replace_strict(list(gpu_ids), list(range(len(gpu_ids))), default=None,
                                 return_dtype=pl.Int64)  # fmt: skip
    decisive = decisive.with_columns(gpu=dev)
    bad_gpu = decisive.filter((pl.col("message") == LAUNCH)
                              & (pl.col("gpu").is_null() | (pl.col("gpu") >= n_gpus)))  # fmt: skip
    for seq, g in bad_gpu.select("seq", "gpu_id").head(5).iter_rows():
        notes.append(f"{where(seq)}: launch on {g!r}, which is not one of the {n_gpus} GPUs")

    # Victims: each "evicting backend" belongs to the next launch line, in log order.
    launch_seq = decisive.filter(pl.col("message") == LAUNCH).select(
        pl.col("seq").alias("launch_seq"), "i")
    victims = (
        ev.filter(pl.col("message") == EVICT)
        .select("seq", "victim")
        .join_asof(launch_seq, left_on="seq", right_on="launch_seq", strategy="forward")
    )
    stray = victims.filter(pl.col("i").is_null())
    if stray.height:
        notes.append(f"{stray.height} 'evicting backend' line(s) with no launch after them: "
                     f"ignored (first at {where(stray['seq'][0])})")  # fmt: skip
    evict = (
        victims.filter(pl.col("i").is_not_null())
        .group_by("i", maintain_order=True)
        .agg(pl.col("victim").alias("evict"))
    )
    logged = (
        req.join(decisive.select("i", "message", "gpu", "reason",
                                 pl.col("line").alias("decision_line")), on="i", how="left")
        .join(evict, on="i", how="left")
        .sort("i")
        .with_columns(
            decision=pl.when(pl.col("message") == LAUNCH).then(pl.lit("load"))
            .when(pl.col("message") == REJECT).then(pl.lit("reject"))
            .otherwise(pl.lit("route")).cast(pl.Enum(["route", "load", "reject"])),
        )
        .with_columns(
            gpu=pl.when(pl.col("decision") == "load").then(pl.col("gpu")),
            evict=pl.when(pl.col("decision") == "load").then(pl.col("evict"))
            .fill_null(pl.lit([], dtype=pl.List(pl.String))),
            reason=pl.when(pl.col("decision") == "reject").then(pl.col("reason")),
        )
        .select("i", "t_ms", "model", "decision", "gpu", "evict", "reason", "log_line",
                "decision_line", "seq")
    )  # fmt: skip

    # Each launch and when it became ready (the next "backend ready" for that model).
    ready = (
        ev.filter(pl.col("message") == READY)
        .select(pl.col("seq").alias("ready_seq"), pl.col("line").alias("ready_line"),
                key.alias("model"))
        .filter(pl.col("model").is_not_null())
    )  # fmt: skip
    launches = (
        ev.filter(pl.col("message") == LAUNCH)
        .select("seq", "line", "t_ms", "model", "gpu_id")
        .join_asof(ready, left_on="seq", right_on="ready_seq", by="model", strategy="forward",
                   check_sortedness=False)
        .with_columns(next_launch_seq=pl.col("seq").shift(-1).over("model"))
        .with_columns(
            # a ready line after the next launch of the same model belongs to that one
            ok=pl.col("ready_seq").is_not_null() & (pl.col("next_launch_seq").is_null()
                                                    | (pl.col("ready_seq") < pl.col("next_launch_seq")))
        )
        .with_columns(
            ready_seq=pl.when("ok").then(pl.col("ready_seq")),
            ready_line=pl.when("ok").then(pl.col("ready_line")),
        )
        .drop("ok", "next_launch_seq")
    )  # fmt: skip
    return logged, launches


def gpu_position(gpu_id: str, gpu_ids: Sequence[int] = ()) -> int | None:
    """Replay position of a logged ``"gpu:N"`` (the config's ``[[gpus]]`` order, if it has one)."""
    m = _GPU_ID.match(str(gpu_id))
    if not m:
        return None
    dev = int(m.group(1))
    if gpu_ids:
        return list(gpu_ids).index(dev) if dev in gpu_ids else None
    return dev


__all__ = [
    "Production",
    "Start",
    "gpu_position",
    "production_from_events",
    "read_production",
]
