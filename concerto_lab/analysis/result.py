"""What a replay returns: the raw decision arrays, and the tables analysts read from them.

Tables are built lazily with polars from the arrays (one uint8 kind and one int8 GPU per request,
plus a sparse eviction list), so a 100 M-request replay stays small until a table is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

from ..model.cluster import Gpu, RoutingConfig
from ..model.dtypes import (
    HEALTH_NAMES,
    LOAD,
    REJECT_NO_FIT,
    REJECT_PINNED,
    REJECT_UNKNOWN,
    ROUTE,
)
from ..model.sizes import format_size
from ..model.trace import Trace, enum_series

DECISIONS = pl.Enum(["route", "load", "reject"])
REASON_KINDS = pl.Enum(["unknown", "pinned", "no_fit"])


def reason_text(kind: int, model: str, vram: int) -> str | None:
    """The reference's exact reject text (``vram`` is ignored for unknown ids)."""
    if kind == REJECT_UNKNOWN:
        return f"Model '{model}' not found in registry"
    if kind == REJECT_PINNED:
        return (
            f"Cannot load model '{model}' (requires {format_size(vram)}): "
            "all eligible eviction candidates are pinned"
        )
    if kind == REJECT_NO_FIT:
        return f"No GPU can fit model '{model}' (requires {format_size(vram)}), even after eviction"
    return None


def cluster_state(gpus: np.ndarray, entries: np.ndarray, names) -> list[dict]:
    """Kernel state arrays in the oracle's ``final_state`` layout, each GPU's list in order."""
    e = np.sort(entries, order=["gpu", "seq"])
    return [
        {
            "id": g,
            "health": HEALTH_NAMES[int(row["health"])],
            "memory_total_bytes": int(row["total"]),
            "memory_used_bytes": int(row["used"]),
            "memory_available_bytes": int(row["available"]),
            "loaded_models": [
                {
                    "model": names[int(x["model"])],
                    "vram_bytes": int(x["vram"]),
                    "last_request_t_ms": int(x["last_t"]),
                    "request_count": int(x["count"]),
                }
                for x in e[e["gpu"] == g]
            ],
        }
        for g, row in enumerate(gpus)
    ]


@dataclass(eq=False)
class ReplayResult:
    trace: Trace
    config: RoutingConfig
    gpus: tuple[Gpu, ...]
    events: tuple
    names: tuple[str, ...]  # code -> model id
    registry: np.ndarray
    kind: np.ndarray  # uint8 per request: ROUTE, LOAD, REJECT_*
    gpu: np.ndarray  # int8 per request, -1 for rejects
    evict_req: np.ndarray  # request index of each eviction, in plan order
    evict_model: np.ndarray  # model code of each eviction
    final_gpus: np.ndarray
    final_entries: np.ndarray
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.kind)

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"ReplayResult({s['requests']} requests: {s['routed']} routed, {s['loads']} loads, "
            f"{s['evictions']} evictions, {s['rejected']} rejected; policy={self.config.policy}, "
            f"headroom={format_size(self.config.headroom)}, {len(self.gpus)} GPUs)"
        )

    # --- numbers -------------------------------------------------------------------------------
    @cached_property
    def _counts(self) -> np.ndarray:
        return np.bincount(self.kind, minlength=5)

    def summary(self) -> dict:
        """Headline figures of the replay, as plain numbers (JSON-ready)."""
        c = self._counts
        n = int(len(self.kind))
        loads = self.kind == LOAD
        loaded_bytes = int(self.registry["vram"][self.trace.model[loads]].sum()) if n else 0
        return {
            "requests": n,
            "routed": int(c[ROUTE]),
            "loads": int(c[LOAD]),
            "evictions": int(len(self.evict_model)),
            "rejected": int(c[REJECT_UNKNOWN] + c[REJECT_PINNED] + c[REJECT_NO_FIT]),
            "rejected_unknown": int(c[REJECT_UNKNOWN]),
            "rejected_pinned": int(c[REJECT_PINNED]),
            "rejected_no_fit": int(c[REJECT_NO_FIT]),
            "routed_share": (int(c[ROUTE]) / n) if n else 0.0,
            "bytes_loaded": loaded_bytes,
            "policy": self.config.policy,
            "headroom_bytes": int(self.config.headroom),
            "gpus": [int(g.total) for g in self.gpus],
            "pins": sorted(self.config.pins),
        }

    def per_model(self) -> pl.DataFrame:
        """Requests, routes, cold starts, times evicted and rejects, per model id."""
        k = len(self.names)
        m = self.trace.model

        def count(mask=None, codes=None):
            codes = m if codes is None else codes
            return np.bincount(codes if mask is None else codes[mask], minlength=k)

        df = pl.DataFrame(
            {
                "model": self.names,
                "requests": count(),
                "routed": count(self.kind == ROUTE),
                "loads": count(self.kind == LOAD),
                "evicted": count(codes=self.evict_model.astype(np.int64)),
                "rejected": count(self.kind >= REJECT_UNKNOWN),
                "vram_bytes": self.registry["vram"],
                "pinned": self.registry["pin"],
                "in_registry": self.registry["known"],
            }
        )
        return df.filter((pl.col("requests") > 0) | (pl.col("evicted") > 0)).sort(
            "requests", descending=True, maintain_order=True
        )

    def per_gpu(self) -> pl.DataFrame:
        """Routes, cold starts, bytes loaded and evictions planned, per GPU."""
        g_n = len(self.gpus)
        ok = self.gpu >= 0
        g = self.gpu[ok].astype(np.int64)
        k = self.kind[ok]
        vram = self.registry["vram"][self.trace.model[ok]]
        ev_gpu = self.gpu[self.evict_req].astype(np.int64)
        return pl.DataFrame(
            {
                "gpu": np.arange(g_n),
                "memory_total_bytes": [x.total for x in self.gpus],
                "routed": np.bincount(g[k == ROUTE], minlength=g_n),
                "loads": np.bincount(g[k == LOAD], minlength=g_n),
                "bytes_loaded": [int(vram[(g == x) & (k == LOAD)].sum()) for x in range(g_n)],
                "evictions": np.bincount(ev_gpu, minlength=g_n),
                "final_used_bytes": self.final_gpus["used"],
                "final_health": [HEALTH_NAMES[h] for h in self.final_gpus["health"]],
            }
        )

    # --- per-request table ---------------------------------------------------------------------
    @cached_property
    def decisions(self) -> pl.DataFrame:
        """One row per request: time, model, decision, gpu, evicted models, reason."""
        n = len(self.kind)
        names = enum_series("", np.arange(len(self.names)), self.names)
        base = pl.DataFrame(
            {
                "i": np.arange(n, dtype=np.int64),
                "t_ms": self.trace.t_ms,
                "code": self.trace.model.astype(np.uint32),
                "kind": self.kind,
                "gpu": self.gpu,
            }
        )
        evicted = (
            pl.DataFrame({"i": self.evict_req, "code": self.evict_model.astype(np.uint32)})
            .with_columns(pl.lit(names).gather(pl.col("code")).cast(pl.String).alias("evict"))
            .group_by("i", maintain_order=True)
            .agg("evict")
        )
        reasons = self._reason_table()
        df = (
            base.join(evicted, on="i", how="left")
            .join(reasons, on=["code", "kind"], how="left")
            .sort("i")
            .select(
                "i",
                "t_ms",
                pl.col("t_ms").cast(pl.Datetime("ms", "UTC")).alias("time"),
                pl.lit(names).gather(pl.col("code")).alias("model"),
                pl.lit(pl.Series(["route", "load", "reject", "reject", "reject"], dtype=DECISIONS))
                .gather(pl.col("kind"))
                .alias("decision"),
                pl.when(pl.col("gpu") >= 0).then(pl.col("gpu")).alias("gpu"),
                pl.col("evict").fill_null(pl.lit([], dtype=pl.List(pl.String))),
                pl.lit(pl.Series([None, None, "unknown", "pinned", "no_fit"], dtype=REASON_KINDS))
                .gather(pl.col("kind"))
                .alias("reason_kind"),
                "reason",
            )
        )
        if self.trace.line is not None:
            df = df.with_columns(pl.Series("line", self.trace.line))
        return df

    def _reason_table(self) -> pl.DataFrame:
        codes = np.unique(self.trace.model[self.kind >= REJECT_UNKNOWN])
        rows = [
            (int(c), k, reason_text(k, self.names[c], int(self.registry["vram"][c])))
            for c in codes
            for k in (REJECT_UNKNOWN, REJECT_PINNED, REJECT_NO_FIT)
        ]
        return pl.DataFrame(
            rows, schema={"code": pl.UInt32, "kind": pl.UInt8, "reason": pl.String}, orient="row"
        )

    def to_parquet(self, path: str | Path) -> None:
        self.decisions.write_parquet(path)

    # --- oracle formats ------------------------------------------------------------------------
    def oracle_lines(self) -> list[dict]:
        """Decisions in the oracle's ``expected.jsonl`` layout, one dict per request."""
        evicts: dict[int, list[str]] = {}
        for r, c in zip(self.evict_req.tolist(), self.evict_model.tolist()):
            evicts.setdefault(r, []).append(self.names[c])
        out = []
        vram = self.registry["vram"]
        for i, (t, c, k, g) in enumerate(
            zip(self.trace.t_ms.tolist(), self.trace.model.tolist(), self.kind.tolist(),
                self.gpu.tolist())
        ):  # fmt: skip
            out.append(
                {
                    "i": i,
                    "t_ms": t,
                    "model": self.names[c],
                    "decision": ("route", "load", "reject", "reject", "reject")[k],
                    "gpu": g if g >= 0 else None,
                    "evict": evicts.get(i, []) if k == LOAD else [],
                    "reason": reason_text(k, self.names[c], int(vram[c])),
                }
            )
        return out

    def final_state(self) -> list[dict]:
        """GPUs after the last event, in the oracle's ``final_state`` layout (list order)."""
        return cluster_state(self.final_gpus, self.final_entries, self.names)
