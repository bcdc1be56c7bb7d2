"""Does the replay reproduce what production did? Request by request, against the log.

A what-if is only worth trusting if the same tool, given production's own settings, start-up
state, restarts and crashes, makes the decisions Concerto logged. ``verify`` replays a
``Production`` and compares each request's decision: route; load, on which GPU, after evicting
which victims in which order; reject, with which reason. Routes are compared by kind only
(Concerto logs no line for a warm route at ``info``).

Each divergence carries the request, its log line, what was logged, what the replay decided,
and, for the first few, the cluster state just before it (the prefix replayed). Causes a replay
cannot see are named when the log shows them: a request whose model's cold start was still in
flight (Concerto 0.1 joins it to the pending load), a launch that never logged ``backend ready``
(the replay assumes every load succeeds). Later divergences of the same start are marked as
downstream of the first one, because from there on the replayed state differs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from ..model.cluster import RoutingConfig
from ..model.dtypes import DECISION_NAMES, REJECT_UNKNOWN
from ..model.sizes import format_size
from ..model.trace import Trace
from .production import Production
from .result import ReplayResult, reason_text

#: Columns of ``FidelityReport.decisions()``: the oracle layout plus the request's log line.
DECISION_COLUMNS = ("i", "t_ms", "model", "decision", "gpu", "evict", "reason", "log_line")

CAUSE_IN_FLIGHT = "in_flight"
CAUSE_FAILED_LAUNCH = "failed_launch"
CAUSE_TEXT = {
    CAUSE_IN_FLIGHT: (
        "{model}'s cold start (launched at log line {launch_line}) was still in flight: Concerto "
        "0.1 joins such a request to the pending load and logs nothing; the replay treats loads "
        "as instantaneous and unaffected by others in flight"
    ),
    CAUSE_FAILED_LAUNCH: (
        "the previous launch of {model} (log line {launch_line}) never logged 'backend ready' "
        "(a failed or timed-out launch); the replay assumes every load succeeds"
    ),
}


@dataclass
class Divergence:
    """One request where the replay and the log disagree."""

    i: int
    log_line: int
    t_ms: int
    model: str
    logged: dict
    replayed: dict
    differs: list[str]  # decision / gpu / evict / reason
    start: int  # which Concerto start (1-based)
    root: int  # request index of the first divergence of this start (== i for the first)
    cause: str | None = None  # CAUSE_* when recognisable
    explanation: str | None = None
    in_flight: list[str] = field(default_factory=list)  # loads launched, not yet ready
    state: list[dict] | None = None  # cluster just before the request (final_state layout)

    @property
    def downstream(self) -> bool:
        return self.root != self.i

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["downstream"] = self.downstream
        return d

    def render(self, gpu_names: list[str] | None = None) -> str:
        when = datetime.fromtimestamp(self.t_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        lines = [
            f"request {self.i} (log line {self.log_line}, {when} UTC, start {self.start}): "
            f"{self.model}",
            f"  logged:   {describe(self.logged)}",
            f"  replayed: {describe(self.replayed)}",
            f"  differs:  {', '.join(self.differs)}",
        ]
        if self.explanation:
            lines.append(f"  cause:    {self.explanation}")
        elif self.downstream:
            lines.append(f"  after:    the divergence at request {self.root} (state already differs)")
        if self.in_flight:
            lines.append(f"  in flight: {', '.join(self.in_flight)}")
        if self.state is not None:
            lines.append("  cluster just before it:")
            lines += ["    " + s for s in render_state(self.state, self.t_ms)]
        return "\n".join(lines)


def describe(d: dict) -> str:
    """``load on gpu 1 evicting [a, b]`` and friends."""
    k = d.get("decision")
    if k == "route":
        return "route" + (f" to gpu {d['gpu']}" if d.get("gpu") is not None else "")
    if k == "load":
        ev = d.get("evict") or []
        return f"load on gpu {d.get('gpu')}" + (f", evicting {', '.join(ev)}" if ev else "")
    return f"reject: {d.get('reason')}"


def render_state(state: list[dict], t_ms: int) -> list[str]:
    out = []
    for g in state:
        models = ", ".join(
            f"{m['model']} ({format_size(m['vram_bytes'])}, idle "
            f"{max(0, t_ms - m['last_request_t_ms']) / 1000:,.0f} s)"
            for m in g["loaded_models"]
        )
        out.append(
            f"gpu {g['id']} {g['health']}: {format_size(g['memory_available_bytes'])} free of "
            f"{format_size(g['memory_total_bytes'])}; " + (models or "nothing loaded")
        )
    return out


@dataclass(eq=False)
class FidelityReport:
    """Per-request agreement of a replay with the logged decisions."""

    production: Production
    result: ReplayResult
    table: pl.DataFrame  # one row per request: logged_* and replayed columns, ``agree``
    divergences: list[Divergence]  # the first ``limit`` divergences, in request order
    n_divergences: int
    settings: dict = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return self.table.height

    @property
    def agreeing(self) -> int:
        return self.requests - self.n_divergences

    @property
    def agreement(self) -> float:
        """Share of requests whose decision matches the log (1.0 when there are none)."""
        return self.agreeing / self.requests if self.requests else 1.0

    @property
    def ok(self) -> bool:
        return self.n_divergences == 0

    def __repr__(self) -> str:
        return (
            f"FidelityReport({self.agreeing:,}/{self.requests:,} requests agree "
            f"({100 * self.agreement:.2f} %), {self.n_divergences:,} divergences)"
        )

    def decisions(self) -> pl.DataFrame:
        """The replayed decisions in the oracle layout plus ``log_line`` (one row per request)."""
        return self.table.select(
            "i", "t_ms", "model", pl.col("decision").cast(pl.String), "gpu", "evict", "reason",
            "log_line",
        )  # fmt: skip

    def write_decisions(self, path: str | Path) -> None:
        """``decisions()`` as JSON lines, keys in the oracle's order (``decisions.expected.jsonl``)."""
        self.decisions().write_ndjson(path)

    def by_decision(self) -> pl.DataFrame:
        """Agreement per logged decision kind."""
        return (
            self.table.group_by(pl.col("logged_decision").alias("logged"))
            .agg(pl.len().alias("requests"), pl.col("agree").sum().alias("agree"))
            .with_columns(share=pl.col("agree") / pl.col("requests"))
            .sort("logged")
        )

    def divergence_table(self) -> pl.DataFrame:
        """Every divergence (not only the first ``limit``) as a table."""
        return self.table.filter(~pl.col("agree"))

    def summary(self) -> dict:
        by = {r["logged"]: (r["agree"], r["requests"]) for r in self.by_decision().to_dicts()}
        causes = {}
        for d in self.divergences:
            causes[d.cause or ("downstream" if d.downstream else "unexplained")] = (
                causes.get(d.cause or ("downstream" if d.downstream else "unexplained"), 0) + 1
            )
        return {
            "requests": self.requests,
            "agree": self.agreeing,
            "agreement": self.agreement,
            "divergences": self.n_divergences,
            "by_logged_decision": {k: {"agree": a, "requests": n} for k, (a, n) in by.items()},
            "starts": len(self.production.starts),
            "crashes": len(self.production.crashes),
            "causes_in_first": causes,
            "replay": dict(self.settings),
        }

    def to_json(self) -> str:
        s = self.summary()
        s["divergence_details"] = [d.to_dict() for d in self.divergences]
        s["notes"] = list(self.production.notes)
        return json.dumps(s)

    def render(self, show: int = 10) -> str:
        p = self.production
        s = self.summary()
        lines = [
            f"requests:   {self.requests:,} in {len(p.starts)} start(s), {len(p.crashes)} "
            f"backend crash(es) replayed"
            + ("" if self.settings.get("restarts", True) else "; restarts OFF")
            + ("" if self.settings.get("crashes", True) else "; crashes OFF"),
            f"agreement:  {self.agreeing:,} / {self.requests:,} = {100 * self.agreement:.2f} %",
        ]
        for kind in ("route", "load", "reject"):
            a, n = (s["by_logged_decision"].get(kind) or {"agree": 0, "requests": 0}).values()
            what = {"route": "kind", "load": "gpu and victims in order", "reject": "reason"}[kind]
            lines.append(f"  logged {kind:<7} {a:>9,} / {n:<9,} agree ({what})")
        for note in p.notes:
            lines.append(f"note: {note}")
        if self.n_divergences:
            roots = self.table.filter(~pl.col("agree")).group_by("start").agg(pl.col("i").min())
            lines += ["", f"{self.n_divergences:,} divergence(s); first per start: "
                      + ", ".join(f"start {a}: request {b}" for a, b in roots.sort("start").iter_rows())]  # fmt: skip
            for d in self.divergences[:show]:
                lines += ["", d.render()]
            if self.n_divergences > min(show, len(self.divergences)):
                lines.append(f"\n... {self.n_divergences - min(show, len(self.divergences)):,} more")
        return "\n".join(lines)


def verify(
    production: Production,
    config: RoutingConfig,
    *,
    restarts: bool = True,
    crashes: bool = True,
    limit: int = 50,
    states: int = 10,
    **what_if,
) -> FidelityReport:
    """Replay ``production`` with ``config`` and compare each decision with the logged one.

    ``limit`` divergences get details (cause, in-flight loads); the first ``states`` of them also
    get the cluster state just before them. ``restarts``/``crashes`` and ``what_if`` (``policy``,
    ``headroom``, ``pins``, ``events``, ``fixes``) are passed to ``Production.replay``.
    """
    what_if.setdefault("warn", False)
    result = production.replay(config, restarts=restarts, crashes=crashes, **what_if)
    table = compare(production, result)
    n_div = int((~table["agree"]).sum())
    divs = _details(production, table.filter(~pl.col("agree")).head(limit))
    for d in divs[:states]:
        d.state = state_before(production, config, d.i, restarts=restarts, crashes=crashes,
                               **what_if)  # fmt: skip
    settings = {"restarts": restarts, "crashes": crashes, "policy": result.config.policy,
                "headroom_bytes": int(result.config.headroom)}  # fmt: skip
    return FidelityReport(production, result, table, divs, n_div, settings)


def compare(production: Production, result: ReplayResult) -> pl.DataFrame:
    """One row per request: the logged and the replayed decision, which fields differ."""
    rep = replayed_table(result)
    log = production.logged.select(
        "i", "t_ms", "model", "log_line", "decision_line", "seq",
        pl.col("decision").cast(pl.String).alias("logged_decision"),
        pl.col("gpu").alias("logged_gpu"), pl.col("evict").alias("logged_evict"),
        pl.col("reason").alias("logged_reason"),
    )  # fmt: skip
    t = log.join(rep, on="i", how="left").with_columns(
        start=pl.Series(_start_of(production, production.logged["seq"].to_numpy()),
                        dtype=pl.Int64),
    )  # fmt: skip
    same_kind = pl.col("decision") == pl.col("logged_decision")
    load = pl.col("logged_decision") == "load"
    reject = pl.col("logged_decision") == "reject"
    t = t.with_columns(
        d_decision=~same_kind,
        d_gpu=same_kind & load & ~pl.col("gpu").eq_missing(pl.col("logged_gpu")),
        d_evict=same_kind & load & (pl.col("evict") != pl.col("logged_evict")),
        d_reason=same_kind & reject & ~pl.col("reason").eq_missing(pl.col("logged_reason")),
    ).with_columns(
        agree=~(pl.col("d_decision") | pl.col("d_gpu") | pl.col("d_evict") | pl.col("d_reason"))
    )
    return t


def _start_of(production: Production, seq: np.ndarray) -> np.ndarray:
    """Which start (1-based) each log position belongs to."""
    starts = np.array([s.seq for s in production.starts], dtype=np.int64)
    return np.searchsorted(starts, seq, "right")  # 0: before the first start-up line


def replayed_table(result: ReplayResult) -> pl.DataFrame:
    """``i``, ``decision``, ``gpu``, ``evict``, ``reason`` straight from the result's arrays."""
    n = len(result.kind)
    names = pl.Series(result.names, dtype=pl.String)
    evict = (
        pl.DataFrame({"i": result.evict_req.astype(np.int64),
                      "evict": names.gather(result.evict_model.astype(np.int64))})
        .group_by("i", maintain_order=True)
        .agg("evict")
    )  # fmt: skip
    rej = np.nonzero(result.kind >= REJECT_UNKNOWN)[0]
    pairs = {(int(c), int(k)) for c, k in zip(result.trace.model[rej], result.kind[rej])}
    reasons = pl.DataFrame(
        [(c, k, reason_text(k, result.names[c], int(result.registry["vram"][c]))) for c, k in pairs],
        schema={"code": pl.Int32, "kind": pl.UInt8, "reason": pl.String}, orient="row",
    )  # fmt: skip
    return (
        pl.DataFrame({"i": np.arange(n, dtype=np.int64), "code": result.trace.model,
                      "kind": result.kind, "gpu": result.gpu.astype(np.int64)})
        .join(evict, on="i", how="left")
        .join(reasons, on=["code", "kind"], how="left")
        .sort("i")
        .select(
            "i",
            pl.col("kind").replace_strict(list(range(len(DECISION_NAMES))), list(DECISION_NAMES),
                                          return_dtype=pl.String).alias("decision"),
            pl.when(pl.col("gpu") >= 0).then(pl.col("gpu")).alias("gpu"),
            pl.col("evict").fill_null(pl.lit([], dtype=pl.List(pl.String))),
            "reason",
        )
    )  # fmt: skip


def _details(production: Production, div: pl.DataFrame) -> list[Divergence]:
    if div.height == 0:
        return []
    # Roots: the first divergence of each start in the whole table is what `div` starts with
    # per start, since `div` keeps request order from the beginning.
    roots = dict(div.group_by("start").agg(pl.col("i").min()).iter_rows())
    launches = production.launches.with_columns(
        start=pl.Series(_start_of(production, production.launches["seq"].to_numpy()),
                        dtype=pl.Int64),
    )  # fmt: skip
    # The model's latest launch before the request line, in the same start.
    prev = div.select("i", "seq", "model", "start").sort("seq").join_asof(
        launches.select(pl.col("seq").alias("launch_seq"), pl.col("line").alias("launch_line"),
                        "model", "ready_seq", pl.col("start").alias("launch_start")),
        left_on="seq", right_on="launch_seq", by="model", strategy="backward",
        check_sortedness=False,
    )  # fmt: skip
    prev = {r["i"]: r for r in prev.to_dicts()}
    ls_ = launches["seq"].to_numpy()
    ll = launches["line"].to_numpy()
    rl = launches["ready_seq"].fill_null(np.iinfo(np.int64).max).to_numpy()
    lst = launches["start"].to_numpy()
    lm = launches["model"].to_list()
    out = []
    for r in div.to_dicts():
        logged = {"decision": r["logged_decision"], "gpu": r["logged_gpu"],
                  "evict": r["logged_evict"], "reason": r["logged_reason"]}  # fmt: skip
        replayed = {"decision": r["decision"], "gpu": r["gpu"], "evict": r["evict"],
                    "reason": r["reason"]}  # fmt: skip
        differs = [k for k in ("decision", "gpu", "evict", "reason") if r[f"d_{k}"]]
        line, seq = r["log_line"], r["seq"]
        flying = np.nonzero((ls_ < seq) & (rl > seq) & (lst == r["start"]))[0]
        in_flight = [f"{lm[j]} (launched at line {int(ll[j])})" for j in flying]
        p = prev.get(r["i"]) or {}
        same_start = p.get("launch_start") == r["start"] and p.get("launch_line") is not None
        cause = None
        if same_start and r["logged_decision"] == "route" and r["decision"] == "load" and (
            p["ready_seq"] is None or p["ready_seq"] > seq
        ):
            cause = CAUSE_IN_FLIGHT
        elif same_start and r["logged_decision"] == "load" and r["decision"] == "route" and (
            p["ready_seq"] is None
        ):
            cause = CAUSE_FAILED_LAUNCH
        out.append(
            Divergence(
                i=r["i"], log_line=line, t_ms=r["t_ms"], model=r["model"], logged=logged,
                replayed=replayed, differs=differs, start=r["start"], root=roots[r["start"]],
                cause=cause,
                explanation=CAUSE_TEXT[cause].format(model=r["model"], launch_line=p.get("launch_line"))
                if cause else None,
                in_flight=in_flight,
            )
        )  # fmt: skip
    return out


def state_before(
    production: Production,
    config: RoutingConfig,
    i: int,
    *,
    restarts: bool = True,
    crashes: bool = True,
    events=(),
    **what_if,
) -> list[dict]:
    """The cluster just before request ``i`` (its control events applied): the prefix, replayed."""
    tr = production.trace
    prefix = Trace(tr.t_ms[:i], tr.model[:i], tr.names,
                   line=None if tr.line is None else tr.line[:i])  # fmt: skip

    def pos(e):
        return e.pos if e.pos is not None else int(np.searchsorted(tr.t_ms, e.t_ms, "left"))

    evs = [e for e in production.events(restarts=restarts, crashes=crashes) if pos(e) <= i]
    evs += [e for e in events if pos(e) <= i]
    what_if["warn"] = False
    from ..replay import replay

    r = replay(prefix, config, production.gpus, events=evs, **what_if)
    return r.final_state()


__all__ = [
    "CAUSE_FAILED_LAUNCH",
    "CAUSE_IN_FLIGHT",
    "DECISION_COLUMNS",
    "Divergence",
    "FidelityReport",
    "compare",
    "state_before",
    "verify",
]
