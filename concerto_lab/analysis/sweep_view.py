"""Reading a sweep: the best settings, the headroom / cold-start trade-off, and a grid heatmap.

All of these take the table ``sweep`` returns. Charts aggregate before they plot (one mark per
cell or point), so they never carry a row per setting and never hit Altair's row limit; they
render offline (``chart.save("x.svg")`` or ``.png`` goes through vl-convert, no browser).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from .sweep import METRICS, SETTING_COLUMNS

#: How ``ranked`` orders settings: fewer rejects, then fewer cold starts, evictions and bytes
#: loaded; then fewer GPUs and more headroom (cheaper, safer); then grid order.
RANK_ORDER = (
    ("rejected", False), ("loads", False), ("evictions", False), ("bytes_loaded", False),
    ("n_gpus", False), ("headroom_bytes", True), ("setting", False),
)  # fmt: skip

#: Columns of the ranked table, when present.
RANK_COLUMNS = (
    "rank", "node", "setting", "policy", "headroom", "pins", "gpus", "scenario", "loads", "rejected",
    "evictions", "routed_share", "bytes_loaded",
)  # fmt: skip

_SUMMED = [m for m in METRICS if m not in ("routed_share", "gpu_loads", "gpu_evictions")]


def combine_nodes(df: pl.DataFrame) -> pl.DataFrame:
    """A fleet view: one row per setting, metrics summed over the nodes (``node = "all"``).

    Per-GPU counts are summed GPU by GPU (every node of a setting has the same layout).
    """
    if df.is_empty() or df["node"].n_unique() == 1:
        return df
    keep = [c for c in SETTING_COLUMNS if c not in ("node", "setting")]
    base = (
        df.group_by("setting", maintain_order=True)
        .agg(*[pl.col(c).first() for c in keep], *[pl.col(m).sum() for m in _SUMMED])
        .with_columns(
            pl.lit("all").alias("node"),
            (pl.col("routed") / pl.col("requests")).fill_nan(0.0).alias("routed_share"),
        )
    )
    for col in ("gpu_loads", "gpu_evictions"):
        per_gpu = (
            df.select("setting", col)
            .with_columns(pl.int_ranges(pl.col(col).list.len()).alias("_k"))
            .explode(col, "_k")
            .group_by("setting", "_k")
            .agg(pl.col(col).sum())
            .sort("setting", "_k")
            .group_by("setting", maintain_order=True)
            .agg(pl.col(col))
        )
        base = base.join(per_gpu, on="setting", how="left")
    return base.select(*SETTING_COLUMNS, *METRICS).sort("setting")


def ranked(df: pl.DataFrame, top: int | None = 10, *, by=RANK_ORDER,
           columns: tuple[str, ...] | None = RANK_COLUMNS) -> pl.DataFrame:  # fmt: skip
    """The best settings first (``RANK_ORDER``), with a 1-based ``rank`` per node.

    ``by`` is a sequence of ``(column, descending)`` pairs; ``columns=None`` keeps every column.
    For a fleet, rank ``combine_nodes(df)`` to get the settings best over all nodes together.
    """
    cols = [c for c, _ in by]
    out = df.sort(cols, descending=[d for _, d in by], maintain_order=True).with_columns(
        pl.int_range(1, pl.len() + 1).over("node").alias("rank")
    )
    if top is not None:
        out = out.filter(pl.col("rank") <= top)
    first = [c for c in RANK_COLUMNS if c in out.columns]
    if columns is not None:
        return out.select([c for c in columns if c in out.columns])
    return out.select(first + [c for c in out.columns if c not in first])


def pareto_front(
    df: pl.DataFrame,
    *,
    x: str = "headroom_bytes",
    y: str = "loads",
    rejects: str = "min",
) -> pl.DataFrame:
    """Settings no other setting beats on both: at least as much ``x`` (headroom reserved; more
    is safer) and no more ``y`` (cold starts), one of them strictly. Computed per node.

    ``rejects``: ``"min"`` (default) considers only the settings with the node's fewest rejects,
    since a headroom that rejects loads has few cold starts for the wrong reason;
    ``"objective"`` makes rejects a third objective to minimise; ``"ignore"`` drops them.
    Sorted by ``x``; settings tied on every objective are all kept.
    """
    if rejects not in ("min", "objective", "ignore"):
        raise ValueError(f"rejects: expected 'min', 'objective' or 'ignore', got {rejects!r}")
    objectives = [x, y] + (["rejected"] if rejects == "objective" else [])
    parts = []
    for _, part in df.group_by("node", maintain_order=True):
        if rejects == "min":
            part = part.filter(pl.col("rejected") == pl.col("rejected").min())
        pts = part.select(objectives).unique()
        a = pts.to_numpy().astype(np.float64)
        a[:, 0] = -a[:, 0]  # maximise x: minimise -x
        keep = np.ones(len(a), dtype=bool)
        for k in range(len(a)):  # distinct points only: a grid has few of them
            le = np.all(a <= a[k], axis=1)
            lt = np.any(a < a[k], axis=1)
            keep[k] = not np.any(le & lt)
        front = pts.filter(pl.Series(keep))
        parts.append(part.join(front, on=objectives, how="semi"))
    if not parts:
        return df.clear()
    return pl.concat(parts).sort(["node", x, y], maintain_order=True)


def grid_cells(
    df: pl.DataFrame, *, x: str = "headroom", y: str = "policy", value: str = "loads",
    agg: str = "best",
) -> pl.DataFrame:  # fmt: skip
    """One row per (``x``, ``y``) cell, over every other dimension (nodes summed first).

    ``agg="best"`` (default) keeps the cell's best setting by ``RANK_ORDER`` (so its ``loads``
    and ``rejected`` belong together, and its pins, GPUs and scenario say how it got there);
    ``"mean"``, ``"min"``, ``"max"`` or ``"sum"`` aggregate ``value`` and ``rejected``.
    Headroom cells keep their byte value for ordering.
    """
    df = combine_nodes(df)  # a fleet's cell is its settings summed over the nodes
    keys = [x, y]
    extra = ["headroom_bytes"] if "headroom" in keys else []
    if agg == "best":
        best = ranked(df.with_columns(pl.lit("").alias("node")), None, columns=None)
        others = [c for c in ("pins", "gpus", "scenario") if c not in keys]
        out = best.group_by(keys, maintain_order=True).agg(
            *[pl.col(c).first() for c in {value, "rejected", *extra, *others} - set(keys)],
            pl.len().alias("settings"),
        )
    elif agg in ("min", "mean", "max", "sum"):
        out = df.group_by(keys, maintain_order=True).agg(
            *[getattr(pl.col(c), agg)() for c in dict.fromkeys([value, "rejected"])],
            *[pl.col(c).first() for c in extra],
            pl.len().alias("settings"),
        )
    else:
        raise ValueError(f"agg: expected best, min, mean, max or sum, got {agg!r}")
    return out.sort(extra + keys)


def heatmap(df: pl.DataFrame, *, x: str = "headroom", y: str = "policy", value: str = "loads",
            agg: str = "best", title: str | None = None):  # fmt: skip
    """An Altair heatmap of ``value`` (cold starts by default) over ``x`` x ``y``.

    Aggregated first with ``grid_cells`` (by default each cell shows its best setting): one
    rect per cell, whatever the size of the sweep. The tooltip adds rejects and, for ``best``,
    the rest of the winning setting.
    """
    import altair as alt

    cells = grid_cells(df, x=x, y=y, value=value, agg=agg).with_columns(
        pl.format("{}{}", pl.col(value).round(1),
                  pl.when(pl.col("rejected") > 0)
                  .then(pl.format(" ({} rej)", pl.col("rejected").round(0).cast(pl.Int64)))
                  .otherwise(pl.lit(""))).alias("_label")  # rejects show: 0 cold starts may mean
    )  # fmt: skip  # every load was rejected
    x_order = cells[x].unique(maintain_order=True).to_list()
    label = {"loads": "cold starts", "rejected": "rejects"}.get(value, value)
    title = title or (f"{label}, best setting per cell" if agg == "best"
                      else f"{label} ({agg} over the other settings)")  # fmt: skip
    extra = [c for c in ("pins", "gpus", "scenario") if c in cells.columns and c not in (x, y)]
    base = alt.Chart(cells).encode(
        x=alt.X(f"{x}:O", sort=x_order, title=x, axis=alt.Axis(labelAngle=0)),
        y=alt.Y(f"{y}:N", title=y),
    )
    rect = base.mark_rect().encode(
        color=alt.Color(f"{value}:Q", title=label, scale=alt.Scale(scheme="orangered")),
        tooltip=[x, y, alt.Tooltip(f"{value}:Q", format=","),
                 alt.Tooltip("rejected:Q", format=","), *extra, "settings"],  # fmt: skip
    )
    text = base.mark_text(fontSize=10).encode(text="_label:N")
    return (rect + text).properties(title=title, width=max(240, 90 * len(x_order)))


def pareto_chart(df: pl.DataFrame, *, y: str = "loads", title: str | None = None):
    """Cold starts against headroom: the best setting per (headroom, policy), and the front."""
    import altair as alt

    gb = (pl.col("headroom_bytes") / 1e9).alias("headroom_gb")
    cells = grid_cells(df, x="headroom", y="policy", value=y).with_columns(gb)
    front = pareto_front(combine_nodes(df), y=y).group_by("headroom_bytes", maintain_order=True).agg(
        pl.col(y).min(), pl.col("headroom").first()
    ).with_columns(gb)
    pts = alt.Chart(cells).mark_point(filled=True, size=60).encode(
        x=alt.X("headroom_gb:Q", title="headroom reserved (GB)"),
        y=alt.Y(f"{y}:Q", title="cold starts" if y == "loads" else y),
        color=alt.Color("policy:N"),
        tooltip=["headroom", "policy", alt.Tooltip(f"{y}:Q", format=","),
                 alt.Tooltip("rejected:Q", format=",")],  # fmt: skip
    )
    line = alt.Chart(front).mark_line(color="black", strokeDash=[4, 3]).encode(
        x="headroom_gb:Q", y=f"{y}:Q"
    )
    return (pts + line).properties(title=title or "cold starts vs headroom (dashed: Pareto front)")


def format_table(df: pl.DataFrame, max_rows: int = 20) -> str:
    """Plain text for a terminal (no box drawing, full column names)."""
    show = df.with_columns(pl.col(pl.Float64).round(4))
    with pl.Config(tbl_rows=max_rows, tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=40,
                   tbl_formatting="ASCII_MARKDOWN", tbl_hide_column_data_types=True,
                   tbl_hide_dataframe_shape=True, thousands_separator=True):  # fmt: skip
        return str(show)


__all__ = ["combine_nodes", "ranked", "pareto_front", "grid_cells", "heatmap", "pareto_chart",
           "format_table", "RANK_ORDER"]  # fmt: skip
