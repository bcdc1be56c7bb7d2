"""Altair charts of a replay: decisions over time, VRAM per GPU, churn per model, comparisons.

Every chart is drawn from a small table aggregated in numpy/polars first (``*_data``
functions, also what tests and the panel read), so a 100 M-request replay embeds at most a few
thousand rows and Altair's ``MaxRowsError`` cannot happen. Nothing here needs a CDN: ``offline()``
switches notebooks to the SVG renderer (vl-convert, no JavaScript), and ``save_png`` /
``save_svg`` / ``to_svg`` render through vl-convert too.

Times are epoch milliseconds on a UTC scale; sizes are shown in GiB (2**30 bytes), the unit
``nvidia-smi`` and Concerto's own reason strings use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import altair as alt
import numpy as np
import polars as pl

from ..analysis.occupancy import FOREIGN_NAME, occupancy_table, residency, span
from ..model.dtypes import LOAD
from ..model.sizes import describe_size

GiB = 2**30
#: Upper bound of rows any one chart embeds (Altair refuses more than 5,000 by default).
MAX_ROWS = 4_000
#: Candidate bucket widths (ms) and their labels, smallest first.
BUCKETS = [
    (w * u, f"{w} {n}")
    for u, n, ws in (
        (1_000, "s", (1, 2, 5, 10, 15, 30)),
        (60_000, "min", (1, 2, 5, 10, 15, 30)),
        (3_600_000, "h", (1, 2, 3, 6, 12)),
        (86_400_000, "d", (1, 2, 7, 14, 30, 90, 365)),
    )
    for w in ws
]
DECISION_ORDER = ["routed", "cold start", "rejected"]
DECISION_COLORS = ["#4c78a8", "#f58518", "#e45756"]
OTHER = "(other models)"
_PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#eeca3b", "#b279a2",
            "#ff9da6", "#9d755d", "#79706e", "#1f77b4", "#bcbd22"]


def _model_colors(domain: list[str]) -> list[str]:
    """Distinct colours for named models; grey for the rest and for other processes."""
    fixed = {OTHER: "#c7c7c7", FOREIGN_NAME: "#5f5f5f"}
    named = iter(_PALETTE * (len(domain) // len(_PALETTE) + 1))
    return [fixed.get(m) or next(named) for m in domain]
_UTC = alt.Scale(type="utc")


def offline() -> None:
    """Render charts in notebooks as inline SVG (vl-convert): works without network access."""
    alt.renderers.enable("svg")


# --- time buckets --------------------------------------------------------------------------------
def pick_bucket(start_ms: int, end_ms: int, max_buckets: int = 200) -> tuple[int, int, int, str]:
    """``(start, width_ms, n_buckets, label)``: the smallest round width giving at most
    ``max_buckets`` buckets over the span, with the start aligned to the width (UTC)."""
    max_buckets = max(1, int(max_buckets))
    for width, label in BUCKETS:
        lo = start_ms - start_ms % width
        n = (end_ms - lo) // width + 1
        if n <= max_buckets:
            return lo, width, int(n), label
    width, label = BUCKETS[-1]
    width *= -(-(end_ms - start_ms + 1) // (width * max_buckets))
    lo = start_ms - start_ms % width
    return lo, width, int((end_ms - lo) // width + 1), f"{width // 86_400_000} d"


def _bucket_of(result, max_buckets: int):
    lo, hi = span(result)
    return pick_bucket(lo, hi, max_buckets)


# --- data (what the charts embed) ----------------------------------------------------------------
def decisions_data(result, max_buckets: int = 200) -> pl.DataFrame:
    """Requests per time bucket and decision: ``t_ms, t_end_ms, decision, requests``."""
    start, width, nb, _ = _bucket_of(result, max_buckets)
    b = (result.trace.t_ms - start) // width
    cls = np.minimum(result.kind, 2).astype(np.int64)  # route 0, load 1, every reject 2
    counts = np.bincount(b * 3 + cls, minlength=nb * 3).reshape(nb, 3)
    k = np.arange(nb, dtype=np.int64)
    top = np.cumsum(counts, axis=1)
    return pl.DataFrame(
        {
            "t_ms": np.repeat(start + k * width, 3),
            "t_end_ms": np.repeat(start + (k + 1) * width, 3),
            "decision": np.tile(DECISION_ORDER, nb),
            "requests": counts.reshape(-1),
            "y0": (top - counts).reshape(-1),
            "y1": top.reshape(-1),
        }
    )


def _top_models(table: pl.DataFrame, weight: str, top: int) -> list[str]:
    return (
        table.filter(pl.col("model") != FOREIGN_NAME)
        .group_by("model")
        .agg(pl.col(weight).sum())
        .sort([weight, "model"], descending=[True, False])
        .head(top)["model"]
        .to_list()
    )


def occupancy_data(result, top: int = 8, max_rows: int = MAX_ROWS, intervals=None) -> pl.DataFrame:
    """Mean GiB resident per bucket, GPU and model (the ``top`` models by byte-time, the rest as
    ``(other models)``, foreign usage as ``(other processes)``): ``t_ms, t_end_ms, gpu, model,
    gib``."""
    per_bucket = max(1, len(result.gpus) * (top + 2))
    start, width, nb, _ = _bucket_of(result, min(200, max(1, max_rows // per_bucket)))
    tab = occupancy_table(result, start, width, nb, intervals=intervals).with_columns(
        pl.col("model").cast(pl.String)
    )
    order = [FOREIGN_NAME, *_top_models(tab, "bytes", top), OTHER]
    rank = pl.col("model").replace_strict(order, list(range(len(order))), default=len(order) - 1)
    return (
        tab.with_columns(
            pl.when(pl.col("model").is_in(order)).then("model").otherwise(pl.lit(OTHER))
            .alias("model")
        )
        .group_by("t_ms", "gpu", "model")
        .agg((pl.col("bytes").sum() / GiB).alias("gib"))
        .with_columns((pl.col("t_ms") + width).alias("t_end_ms"), rank.alias("rank"))
        .sort("t_ms", "gpu", "rank")
        .with_columns(pl.col("gib").cum_sum().over("t_ms", "gpu").alias("y1"))
        .with_columns((pl.col("y1") - pl.col("gib")).alias("y0"))
        .select("t_ms", "t_end_ms", "gpu", "model", "gib", "y0", "y1")
    )  # fmt: skip


def churn_data(result, top: int = 15) -> pl.DataFrame:
    """Cold starts and times evicted for the ``top`` models by their sum: ``model, what, count``."""
    pm = result.per_model().select("model", pl.col("loads"), pl.col("evicted"))
    pm = pm.with_columns(pl.col("model").cast(pl.String)).filter(
        (pl.col("loads") + pl.col("evicted")) > 0
    )
    pm = pm.sort(pl.col("loads") + pl.col("evicted"), "model", descending=[True, False]).head(top)
    return pm.unpivot(index="model", variable_name="what", value_name="count").with_columns(
        pl.col("what").replace({"loads": "cold starts", "evicted": "evicted"})
    )


def evictions_matrix(result, top: int = 12) -> pl.DataFrame:
    """Who evicted whom: ``loader, victim, evictions`` over the ``top`` models by involvement,
    the rest folded into ``(other models)``."""
    if not len(result.evict_req):
        return pl.DataFrame(schema={"loader": pl.String, "victim": pl.String, "evictions": pl.Int64})
    k = len(result.names)
    loader = result.trace.model[result.evict_req].astype(np.int64)
    victim = result.evict_model.astype(np.int64)
    involvement = np.bincount(loader, minlength=k) + np.bincount(victim, minlength=k)
    names = np.array(result.names, dtype=object)
    keep = np.lexsort((names, -involvement))[:top]
    label = np.full(k, len(keep), dtype=np.int64)  # the last label is OTHER
    label[keep] = np.arange(len(keep))
    width = len(keep) + 1
    counts = np.bincount(label[loader] * width + label[victim], minlength=width * width)
    nz = np.flatnonzero(counts)
    text = [*(result.names[c] for c in keep), OTHER]
    return (
        pl.DataFrame(
            {
                "loader": [text[c] for c in (nz // width).tolist()],
                "victim": [text[c] for c in (nz % width).tolist()],
                "evictions": counts[nz].astype(np.int64),
            }
        )
        .sort("evictions", "loader", "victim", descending=[True, False, False])
    )


COMPARE_METRICS = ["routed", "loads", "evictions", "rejected"]


def compare_data(results: Mapping[str, object] | Sequence, delta: bool = False) -> pl.DataFrame:
    """Headline counts per replay (``replay, metric, value``); with ``delta``, each replay minus
    the first (the baseline), baseline left out."""
    results = _labelled(results)
    rows = [
        (name, m, int(s[m])) for name, s in ((n, r.summary()) for n, r in results.items())
        for m in COMPARE_METRICS
    ]
    df = pl.DataFrame(rows, schema={"replay": pl.String, "metric": pl.String, "value": pl.Int64},
                      orient="row")  # fmt: skip
    if not delta:
        return df
    base_name = next(iter(results))
    base = df.filter(pl.col("replay") == base_name).select("metric", pl.col("value").alias("b"))
    return (
        df.filter(pl.col("replay") != base_name)
        .join(base, on="metric", maintain_order="left")
        .select("replay", "metric", (pl.col("value") - pl.col("b")).alias("value"))
    )


def _labelled(results) -> dict:
    if isinstance(results, Mapping):
        return dict(results)
    out = {}
    for k, r in enumerate(results):
        out[f"{k}: {r.config.policy}, headroom {describe_size(r.config.headroom)}"] = r
    return out


# --- charts --------------------------------------------------------------------------------------
def _time_x(title: str = "time (UTC)"):
    return alt.X("t_ms:T", scale=_UTC, title=title, axis=alt.Axis(labelOverlap=True))


def decisions_chart(result, max_buckets: int = 200, width: int = 640, height: int = 180,
                    data: pl.DataFrame | None = None):
    """Routed / cold-start / rejected requests per time bucket (stacked); ``data`` is
    ``decisions_data(result, max_buckets)`` when the caller already has it."""
    _, _, _, label = _bucket_of(result, max_buckets)
    data = decisions_data(result, max_buckets) if data is None else data
    return (
        alt.Chart(data, title="Routing decisions over time", width=width, height=height)
        .transform_filter("datum.requests > 0")
        .mark_rect()
        .encode(
            x=_time_x(),
            x2="t_end_ms:T",
            y=alt.Y("y0:Q", title=f"requests per {label}"),
            y2="y1:Q",
            color=alt.Color("decision:N", scale=alt.Scale(domain=DECISION_ORDER,
                            range=DECISION_COLORS), title="decision"),
            tooltip=[alt.Tooltip("utcyearmonthdatehoursminutes(t_ms):T",
                                 title="bucket start (UTC)"), "decision:N", "requests:Q"],
        )
    )  # fmt: skip


def occupancy_chart(result, top: int = 8, width: int = 640, height: int = 150, intervals=None,
                    data: pl.DataFrame | None = None):
    """Mean VRAM resident per GPU over time, stacked by model, with capacity and headroom lines."""
    data = occupancy_data(result, top=top, intervals=intervals) if data is None else data
    _, width_ms, _, label = _bucket_of(
        result, min(200, max(1, MAX_ROWS // max(1, len(result.gpus) * (top + 2))))
    )
    present = set(data["model"].to_list())
    named = data.filter(pl.col("model") != OTHER).rename({"gib": "bytes"})
    domain = _top_models(named, "bytes", top)
    domain += [m for m in (OTHER, FOREIGN_NAME) if m in present]
    headroom = int(result.config.headroom)
    panels = []
    for g, gpu in enumerate(result.gpus):
        d = data.filter(pl.col("gpu") == g)
        lines = pl.DataFrame(
            {
                "gib": [gpu.total / GiB, max(0, gpu.total - headroom) / GiB],
                "line": [f"capacity {describe_size(gpu.total)}",
                         f"capacity - headroom ({describe_size(headroom)})"],
            }
        )  # fmt: skip
        area = (
            alt.Chart(d)
            .mark_rect()
            .encode(
                x=_time_x(),
                x2="t_end_ms:T",
                y=alt.Y("y0:Q", title=f"GPU {g}: GiB resident",
                        scale=alt.Scale(domain=[0, gpu.total / GiB * 1.05])),
                y2="y1:Q",
                color=alt.Color("model:N", scale=alt.Scale(domain=domain, range=_model_colors(domain)),
                                title=f"model (mean over {label})",
                                legend=alt.Legend(labelLimit=260)),
                tooltip=["model:N", alt.Tooltip("gib:Q", format=".2f", title="GiB")],
            )
        )  # fmt: skip
        rules = (
            alt.Chart(lines)
            .mark_rule(strokeDash=[6, 3], color="black")
            .encode(
                y="gib:Q",
                strokeDash=alt.StrokeDash("line:N", title=f"GPU {g} limits",
                                          scale=alt.Scale(range=[[1, 0], [6, 3]]),
                                          legend=alt.Legend(labelLimit=320)),
            )
        )  # fmt: skip
        panels.append(alt.layer(area, rules).properties(width=width, height=height))
    title = f"VRAM per GPU over time (mean per {label}, GiB = 2^30 bytes)"
    return alt.vconcat(*panels, title=title).resolve_scale(color="shared", strokeDash="independent")


def churn_chart(result, top: int = 15, width: int = 300, height: int = 300,
                data: pl.DataFrame | None = None):
    """Cold starts and evictions per model (the ``top`` models by their sum)."""
    data = churn_data(result, top) if data is None else data
    order = data.filter(pl.col("what") == "cold starts")["model"].to_list()
    return (
        alt.Chart(data, title=f"Cold starts and evictions per model (top {len(order)})",
                  width=width, height=height)
        .mark_bar()
        .encode(
            y=alt.Y("model:N", sort=order, title="model"),
            yOffset="what:N",
            x=alt.X("count:Q", title="count over the whole replay"),
            color=alt.Color("what:N", scale=alt.Scale(domain=["cold starts", "evicted"],
                            range=["#f58518", "#72b7b2"]), title=""),
            tooltip=["model:N", "what:N", "count:Q"],
        )
    )  # fmt: skip


def who_evicted_whom_chart(result, top: int = 12, size: int = 300,
                           data: pl.DataFrame | None = None):
    """Heat map: model being loaded (rows) x model it evicted (columns), with counts."""
    data = evictions_matrix(result, top) if data is None else data
    base = alt.Chart(data, title="Who evicted whom", width=size, height=size).encode(
        y=alt.Y("loader:N", title="model loaded (cold start)"),
        x=alt.X("victim:N", title="model evicted", axis=alt.Axis(labelAngle=-45)),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("evictions:Q", scale=alt.Scale(scheme="orangered"), title="evictions"),
        tooltip=["loader:N", "victim:N", "evictions:Q"],
    )
    text = base.mark_text(fontSize=8).encode(text="evictions:Q")
    return alt.layer(cells, text)


def compare_chart(
    results, delta: bool = False, max_buckets: int = 120, width: int = 320, height: int = 200,
    data: pl.DataFrame | None = None,
):
    """Two or more replays: headline counts side by side (or minus the first), and cold starts
    per time bucket as one line per replay."""
    results = _labelled(results)
    data = compare_data(results, delta=delta) if data is None else data
    title = f"Change against {next(iter(results))!r}" if delta else "Headline counts"
    order = list(results)
    bars = (
        alt.Chart(data, title=title, width=width, height=height)
        .mark_bar()
        .encode(
            y=alt.Y("metric:N", sort=COMPARE_METRICS, title=""),
            yOffset=alt.YOffset("replay:N", sort=order),
            x=alt.X("value:Q", title="requests (delta)" if delta else "requests"),
            color=alt.Color("replay:N", title="replay", scale=alt.Scale(domain=order)),
            tooltip=["replay:N", "metric:N", "value:Q"],
        )
    )  # fmt: skip
    spans = [span(r) for r in results.values()]
    lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
    start, width_ms, nb, label = pick_bucket(lo, hi, max_buckets)
    frames = []
    for name, r in results.items():
        b = (r.trace.t_ms[r.kind == LOAD] - start) // width_ms
        frames.append(
            pl.DataFrame({"t_ms": start + np.arange(nb, dtype=np.int64) * width_ms,
                          "cold_starts": np.bincount(b, minlength=nb)[:nb]})
            .with_columns(pl.lit(name).alias("replay"))
        )  # fmt: skip
    lines = (
        alt.Chart(pl.concat(frames), title="Cold starts over time", width=width, height=height)
        .mark_line(interpolate="step-after")
        .encode(
            x=_time_x(),
            y=alt.Y("cold_starts:Q", title=f"cold starts per {label}"),
            color=alt.Color("replay:N", title="replay", scale=alt.Scale(domain=order)),
        )
    )  # fmt: skip
    return alt.hconcat(bars, lines)


def dashboard(result, baseline=None, top: int = 8):
    """The main charts of one replay on one canvas (plus the comparison if ``baseline``)."""
    iv = residency(result)
    rows = [
        decisions_chart(result),
        occupancy_chart(result, top=top, intervals=iv),
        alt.hconcat(churn_chart(result), who_evicted_whom_chart(result)),
    ]
    if baseline is not None:
        rows.append(compare_chart({"baseline": baseline, "what-if": result}, delta=False))
    s = result.summary()
    sub = (
        f"{s['requests']:,} requests, {len(result.gpus)} GPUs "
        f"({' + '.join(describe_size(g.total) for g in result.gpus)}), policy {s['policy']}, "
        f"headroom {describe_size(s['headroom_bytes'])}: {s['routed']:,} routed, "
        f"{s['loads']:,} cold starts, {s['evictions']:,} evictions, {s['rejected']:,} rejected"
    )
    return alt.vconcat(*rows, title=alt.Title("Concerto replay", subtitle=sub)).resolve_scale(
        color="independent"
    )


# --- static export -------------------------------------------------------------------------------
def _spec(chart) -> str:
    return chart.to_json(validate=False)


def to_svg(chart) -> str:
    import vl_convert as vlc

    return vlc.vegalite_to_svg(_spec(chart))


def save_svg(chart, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(to_svg(chart))
    return path


def save_png(chart, path: str | Path, scale: float = 1.5) -> Path:
    import vl_convert as vlc

    path = Path(path)
    path.write_bytes(vlc.vegalite_to_png(_spec(chart), scale=scale))
    return path


def save(chart, path: str | Path) -> Path:
    """Write ``chart`` as PNG or SVG, chosen by the file suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        return save_png(chart, path)
    if suffix == ".svg":
        return save_svg(chart, path)
    raise ValueError(f"{path}: chart files must end in .png or .svg")


__all__ = [
    "offline", "pick_bucket", "decisions_data", "occupancy_data", "churn_data",
    "evictions_matrix", "compare_data", "decisions_chart", "occupancy_chart", "churn_chart",
    "who_evicted_whom_chart", "compare_chart", "dashboard", "to_svg", "save_svg", "save_png",
    "save", "GiB", "MAX_ROWS",
]
