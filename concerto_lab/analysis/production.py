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

import re
import warnings
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
    them from nvidia-smi CSV, NVML or ``/status``).
    """
    from ..io.concerto_log import read_concerto_log, read_log_events

    trace = read_concerto_log(paths, strict=strict)
    events, report = read_log_events(paths)
    return production_from_events(
        trace, events, snapshots, gpu_ids=config.gpu_ids if config is not None else (),
        report=report if trace.report is None else trace.report,
    )  # fmt: skip


def production_from_events(
    trace: Trace,
    events: pl.DataFrame,
    snapshots: Sequence[Sequence[Gpu]],
    *,
    gpu_ids: Sequence[int] = (),
    report: IntakeReport | None = None,
) -> Production:
    """The pure part of ``read_production``: a trace (with ``line``) and the event table."""
    if trace.line is None:
        raise ValueError("the trace has no log line numbers: read it with read_concerto_log")
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
    ev = _single_file_lines(events, notes).sort("line")
    req_lines = np.asarray(trace.line, dtype=np.int64)
    line_sorted = bool(len(req_lines) < 2 or np.all(np.diff(req_lines) > 0))
    sorted_lines = req_lines if line_sorted else np.sort(req_lines)

    def pos_of(lines: np.ndarray) -> np.ndarray:
        return np.searchsorted(sorted_lines, lines, side="left")

    # Start-ups: "ready to serve" and "listening" of one start are adjacent; count it once.
    prev = pl.col("message").shift(1)
    is_start = pl.col("message").is_in(START_MESSAGES)
    starts_df = ev.with_columns(new=is_start & ~(prev.is_in(START_MESSAGES).fill_null(False))) \
        .filter(pl.col("new"))  # fmt: skip
    s_lines = starts_df["line"].to_numpy()
    s_pos = pos_of(s_lines)
    offset = 0
    if len(trace) and (len(s_lines) == 0 or s_pos[0] > 0):
        offset = 1
        notes.append(
            f"the log begins mid-run ({int(s_pos[0]) if len(s_lines) else len(trace)} requests "
            "before its first start-up line): the state before them is assumed empty, with "
            "snapshot 1's GPUs"
        )
    starts, restarts = [], []
    for k, (line, t, pos) in enumerate(zip(s_lines.tolist(), starts_df["t_ms"].to_list(),
                                           s_pos.tolist())):  # fmt: skip
        snap = k + offset
        have = snap < len(snapshots)
        starts.append(Start(k + 1, line, t, pos, snap if have else None))
        if snap == 0:
            continue  # the initial state
        if not have:
            notes.append(
                f"start {k + 1} (log line {line}) has no start-up snapshot of its own: it is "
                "replayed with snapshot 1's GPUs (give one snapshot per start for fidelity)"
            )
        restarts.append(Restart(t, snapshots[snap] if have else (), pos=pos))
    if len(snapshots) > len(starts) + offset:
        notes.append(
            f"{len(snapshots)} snapshots given for {len(starts) + offset} start(s): "
            f"the last {len(snapshots) - len(starts) - offset} are unused"
        )

    cr = ev.filter(pl.col("message") == CRASH)
    missing = cr.filter(pl.col("model_id").is_null())
    for line in missing["line"].to_list():
        notes.append(f"log line {line}: {CRASH!r} without model_id: ignored")
    cr = cr.filter(pl.col("model_id").is_not_null())
    cr_pos = pos_of(cr["line"].to_numpy())
    crashes = tuple(
        Crash(t, m, pos=p)
        for t, m, p in zip(cr["t_ms"].to_list(), cr["model_id"].to_list(), cr_pos.tolist())
    )

    logged, launches = _logged_decisions(trace, ev, tuple(gpu_ids), n_gpus, notes)
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


def _single_file_lines(ev: pl.DataFrame, notes: list[str]) -> pl.DataFrame:
    """Line numbers are per file; several files are read in order, so make them one sequence."""
    if "file" not in ev.columns or ev["file"].n_unique() <= 1:
        return ev
    raise ConfigError(
        "a production log spread over several files needs one line sequence; concatenate the "
        "files (in time order) into one log first"
    )


def _logged_decisions(trace: Trace, ev: pl.DataFrame, gpu_ids: tuple[int, ...], n_gpus: int,
                      notes: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:  # fmt: skip
    n = len(trace)
    req = pl.DataFrame(
        {
            "i": np.arange(n, dtype=np.int64),
            "t_ms": trace.t_ms,
            "model": pl.Series(trace.names, dtype=pl.String).gather(trace.model),
            "log_line": np.asarray(trace.line, dtype=np.int64),
        }
    )
    req_by_line = req.sort("log_line")
    key = pl.coalesce("model", "model_id")

    # The decisive lines (launch, reject) go to the latest earlier request for the same model.
    decisive = (
        ev.filter(pl.col("message").is_in([LAUNCH, REJECT]))
        .select("line", "t_ms", "message", pl.col("model").alias("d_model"), "gpu_id", "reason")
        .sort("line")
    )
    decisive = decisive.join_asof(
        req_by_line.select("log_line", pl.col("model").alias("d_model"), "i"),
        left_on="line", right_on="log_line", by="d_model", strategy="backward",
        check_sortedness=False,  # both sides are sorted by line; polars cannot check with `by`
    ).join_asof(
        req_by_line.select(pl.col("log_line").alias("prev_line"), pl.col("i").alias("prev_i")),
        left_on="line", right_on="prev_line", strategy="backward",
    )  # fmt: skip
    orphans = decisive.filter(pl.col("i").is_null())
    for line, msg, model in orphans.select("line", "message", "d_model").iter_rows():
        notes.append(f"log line {line}: {msg!r} for {model!r} follows no request for it: ignored")
    interleaved = decisive.filter(pl.col("i").is_not_null() & (pl.col("i") != pl.col("prev_i")))
    if interleaved.height:
        notes.append(
            f"{interleaved.height} decision line(s) follow another request's line (concurrent "
            f"requests); each was given to the latest earlier request for its model, first at "
            f"log line {interleaved['line'][0]}"
        )
    decisive = decisive.filter(pl.col("i").is_not_null())
    dup = decisive.filter(pl.col("i").is_duplicated())
    if dup.height:
        first_lines = dup.group_by("i").agg(pl.col("line").sort()).sort("i")
        for i, lines in first_lines.head(5).iter_rows():
            notes.append(
                f"request {i} has {len(lines)} decision lines (log lines {lines}): the first counts"
            )
        if first_lines.height > 5:
            notes.append(f"... {first_lines.height - 5} more requests with several decision lines")
        decisive = decisive.unique("i", keep="first", maintain_order=True)

    # GPU of a launch: "gpu:N" is a device id; replay positions follow the config's [[gpus]].
    dev = pl.col("gpu_id").str.extract(r"^\s*(?:gpu:)?(\d+)\s*$").cast(pl.Int64, strict=False)
    if gpu_ids:
        dev = dev.replace_strict(list(gpu_ids), list(range(len(gpu_ids))), default=None,
                                 return_dtype=pl.Int64)  # fmt: skip
    decisive = decisive.with_columns(gpu=dev)
    bad_gpu = decisive.filter((pl.col("message") == LAUNCH)
                              & (pl.col("gpu").is_null() | (pl.col("gpu") >= n_gpus)))  # fmt: skip
    for line, g in bad_gpu.select("line", "gpu_id").head(5).iter_rows():
        notes.append(f"log line {line}: launch on {g!r}, which is not one of the {n_gpus} GPUs")

    # Victims: each "evicting backend" belongs to the next launch line, in log order.
    launch_lines = decisive.filter(pl.col("message") == LAUNCH).select(
        pl.col("line").alias("launch_line"), "i")
    victims = (
        ev.filter(pl.col("message") == EVICT)
        .select("line", "victim")
        .join_asof(launch_lines, left_on="line", right_on="launch_line", strategy="forward")
    )
    stray = victims.filter(pl.col("i").is_null())
    if stray.height:
        notes.append(f"{stray.height} 'evicting backend' line(s) with no launch after them: "
                     f"ignored (first at log line {stray['line'][0]})")  # fmt: skip
    evict = (
        victims.filter(pl.col("i").is_not_null())
        .sort("line")
        .group_by("i", maintain_order=True)
        .agg(pl.col("victim").alias("evict"))
    )
    logged = (
        req.join(decisive.select("i", "message", "gpu", "reason", pl.col("line").alias("decision_line")),
                 on="i", how="left")
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
                "decision_line")
    )  # fmt: skip

    # Each launch and when it became ready (the next "backend ready" for that model).
    ready = (
        ev.filter(pl.col("message") == READY)
        .select(pl.col("line").alias("ready_line"), key.alias("model"))
        .filter(pl.col("model").is_not_null())
        .sort("ready_line")
    )
    next_launch = pl.col("line").shift(-1).over("model")
    launches = (
        ev.filter(pl.col("message") == LAUNCH)
        .select("line", "t_ms", "model", "gpu_id")
        .sort("line")
        .join_asof(ready, left_on="line", right_on="ready_line", by="model", strategy="forward",
                   check_sortedness=False)
        .with_columns(next_launch_line=next_launch)
        .with_columns(
            # a ready line after the next launch of the same model belongs to that one
            ready_line=pl.when(pl.col("next_launch_line").is_null()
                               | (pl.col("ready_line") < pl.col("next_launch_line")))
            .then(pl.col("ready_line"))
        )
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


def warn_notes(production: Production, stacklevel: int = 2) -> None:
    for text in production.notes:
        warnings.warn(text, stacklevel=stacklevel + 1)


__all__ = [
    "Production",
    "Start",
    "gpu_position",
    "production_from_events",
    "read_production",
]
