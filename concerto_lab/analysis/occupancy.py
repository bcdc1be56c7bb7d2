"""Which model held how much VRAM on which GPU, and when, rebuilt exactly from a replay.

A ``ReplayResult`` keeps only decisions (kind and GPU per request, the sparse eviction list) and
the health/crash/restart events. That is enough to replay the residency alone: a load appends a
copy of the model on its GPU; each evicted id removes *every* copy of that id on *every* GPU
(quirk Q5, so a Q4 duplicate id finds nothing the second time); a crash removes every copy; a
restart empties the node and resets foreign usage to the restart's snapshot. Routes change
nothing. The pass is one jitted loop over loads, evictions and events, never over requests.

Foreign usage (memory other processes hold at start-up or after a restart) is an interval of the
pseudo-model ``FOREIGN`` (code -1), so per-GPU sums equal the replay's ``used`` counters.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from numba import njit

from ..model.arrays import build_inputs
from ..model.dtypes import EV_CRASH, EV_RESET, LOAD

#: Model code of memory held by other processes.
FOREIGN = -1
FOREIGN_NAME = "(other processes)"

# Why an interval ended.
END_RESIDENT, END_EVICTED, END_CRASH, END_RESTART = 0, 1, 2, 3
END_NAMES = ("resident", "evicted", "crash", "restart")

# Operation kinds merged into one stream, in the order the replay applies them at one request.
_OP_CONTROL, _OP_EVICT, _OP_LOAD = 0, 1, 2


@njit(cache=True)
def _residency(
    op_pos, op_kind, op_arg, op_t, n_gpus, snap_used, vram, t_start, t_end, n_requests,
):  # fmt: skip
    """Intervals ``(gpu, model, vram, start_t, end_t, start_i, end_i, cause)`` of every copy."""
    n_ops = op_pos.shape[0]
    cap = n_ops + 2 * n_gpus * (snap_used.shape[0] + 1) + 1
    gpu = np.empty(cap, np.int32)
    model = np.empty(cap, np.int32)
    size = np.empty(cap, np.int64)
    t0 = np.empty(cap, np.int64)
    t1 = np.empty(cap, np.int64)
    i0 = np.empty(cap, np.int64)
    i1 = np.empty(cap, np.int64)
    cause = np.empty(cap, np.int8)
    open_ = np.empty(cap, np.int64)  # rows of open intervals, in load order
    n_open = 0
    n = 0
    # Start-up foreign usage.
    for g in range(n_gpus):
        if snap_used[0, g] > 0:
            gpu[n], model[n], size[n], t0[n], i0[n] = g, -1, snap_used[0, g], t_start, 0
            open_[n_open] = n
            n_open += 1
            n += 1
    for k in range(n_ops):
        kind = op_kind[k]
        pos = op_pos[k]
        t = op_t[k]
        if kind == _OP_LOAD:
            gpu[n] = op_arg[k] >> 32
            model[n] = op_arg[k] & 0xFFFFFFFF
            size[n] = vram[op_arg[k] & 0xFFFFFFFF]
            t0[n] = t
            i0[n] = pos
            open_[n_open] = n
            n_open += 1
            n += 1
            continue
        # Removals: an evicted or crashed id (every copy, every GPU), or a restart (everything).
        restart = kind == _OP_CONTROL and (op_arg[k] & 0xFF) == EV_RESET
        m = op_arg[k] >> 8 if kind == _OP_CONTROL else op_arg[k]
        if kind == _OP_CONTROL and not restart and (op_arg[k] & 0xFF) != EV_CRASH:
            continue  # health changes move no memory
        why = END_EVICTED if kind == _OP_EVICT else (END_RESTART if restart else END_CRASH)
        keep = 0
        for j in range(n_open):
            r = open_[j]
            if restart or (model[r] == m and model[r] >= 0):
                t1[r], i1[r], cause[r] = t, pos, why
            else:
                open_[keep] = r
                keep += 1
        n_open = keep
        if restart:
            snap = m  # the snapshot index rides in the model slot
            for g in range(n_gpus):
                if snap_used[snap, g] > 0:
                    gpu[n], model[n], size[n], t0[n], i0[n] = g, -1, snap_used[snap, g], t, pos
                    open_[n_open] = n
                    n_open += 1
                    n += 1
    for j in range(n_open):
        r = open_[j]
        t1[r], i1[r], cause[r] = t_end, n_requests, END_RESIDENT
    return gpu[:n], model[:n], size[:n], t0[:n], t1[:n], i0[:n], i1[:n], cause[:n]


def _operations(result):
    """Loads, evictions and control events as one stream sorted into replay order."""
    trace = result.trace
    inp = build_inputs(trace, result.config, result.gpus, result.events)
    n = len(trace)
    loads = np.flatnonzero(result.kind == LOAD)
    ctl = inp.control
    t_ctl = ctl["t"]
    arg_ctl = (ctl["val"].astype(np.int64) << 8) | ctl["kind"].astype(np.int64)
    crash = ctl["kind"] == EV_CRASH
    arg_ctl[crash] = (ctl["arg"][crash].astype(np.int64) << 8) | EV_CRASH
    pos = np.concatenate([ctl["pos"], result.evict_req, loads]).astype(np.int64)
    kind = np.concatenate(
        [np.full(len(ctl), _OP_CONTROL), np.full(len(result.evict_req), _OP_EVICT),
         np.full(len(loads), _OP_LOAD)]
    ).astype(np.int8)  # fmt: skip
    arg = np.concatenate(
        [arg_ctl, result.evict_model.astype(np.int64),
         (result.gpu[loads].astype(np.int64) << 32) | trace.model[loads].astype(np.int64)]
    )  # fmt: skip
    t = np.concatenate([t_ctl, trace.t_ms[result.evict_req], trace.t_ms[loads]]).astype(np.int64)
    # Stable sort by (pos, kind): controls before the request, then its evictions in plan order,
    # then its load.
    order = np.argsort(pos * 4 + kind, kind="stable")  # three sorted runs: a cheap merge
    return pos[order], kind[order], arg[order], t[order], inp


def as_enum(codes, names) -> pl.Series:
    """Integer codes as a polars Enum over ``names``."""
    return pl.Series(np.asarray(codes).astype(np.uint32)).cat.to(pl.Enum(list(names)))


def span(result) -> tuple[int, int]:
    """First and last time of the replay (requests and events), epoch ms."""
    times = [int(x) for x in result.trace.t_ms[[0, -1]]] if len(result.trace) else []
    times += [int(e.t_ms) for e in result.events]
    return (min(times), max(times)) if times else (0, 0)


def residency(result) -> pl.DataFrame:
    """One row per resident copy: ``gpu, model, vram_bytes, start_ms, end_ms, start_i, end_i,
    end``. ``start_i``/``end_i`` are request indices: the copy is resident just before request
    ``k`` iff ``start_i < k <= end_i``; copies still loaded at the end have ``end = "resident"``
    and ``end_i = len(trace)``. Foreign usage appears as model ``(other processes)``.
    """
    pos, kind, arg, t, inp = _operations(result)
    n = len(result.trace)
    t_start, t_end = span(result)
    snap_used = np.ascontiguousarray(inp.snapshots["used"], dtype=np.int64)
    vram = np.ascontiguousarray(inp.registry["vram"], dtype=np.int64)
    g, m, v, t0, t1, i0, i1, c = _residency(
        pos, kind, arg, t, len(result.gpus), snap_used, vram, np.int64(t_start), np.int64(t_end),
        np.int64(n),
    )
    names = [FOREIGN_NAME, *inp.names]
    return pl.DataFrame(
        {
            "gpu": g,
            "model": as_enum(m + 1, names),
            "vram_bytes": v,
            "start_ms": t0,
            "end_ms": t1,
            "start_i": i0,
            "end_i": i1,
            "end": as_enum(c, END_NAMES),
        }
    )


def used_at(intervals: pl.DataFrame, k: int, n_gpus: int, *, foreign: bool = True) -> np.ndarray:
    """Bytes resident per GPU just before request ``k`` (``k = len(trace)``: at the end)."""
    live = intervals.filter((pl.col("start_i") < k) & (pl.col("end_i") >= k))
    if not foreign:
        live = live.filter(pl.col("model") != FOREIGN_NAME)
    out = np.zeros(n_gpus, dtype=np.int64)
    np.add.at(out, live["gpu"].to_numpy(), live["vram_bytes"].to_numpy())
    return out


@njit(cache=True)
def _bucket_bytes(gpu, model, size, t0, t1, start, width, n_buckets, n_models, out):
    """Add each interval's byte-milliseconds to the buckets it overlaps."""
    for r in range(gpu.shape[0]):
        a = max(t0[r], start)
        b = min(t1[r], start + width * n_buckets)
        if b <= a:
            continue
        k = (a - start) // width
        while k < n_buckets:
            lo = start + k * width
            hi = lo + width
            if lo >= b:
                break
            ov = min(b, hi) - max(a, lo)
            if ov > 0:
                out[k, gpu[r], model[r]] += np.float64(size[r]) * ov
            k += 1


def occupancy_table(
    result, start_ms: int, width_ms: int, n_buckets: int, *, intervals: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Mean bytes resident per (bucket, GPU, model) over equal time buckets.

    ``bytes`` is the time-weighted mean over the bucket, so a model resident half of an hour-long
    bucket counts half its size. Zero rows are left out.
    """
    iv = residency(result) if intervals is None else intervals
    names = list(iv["model"].dtype.categories)
    codes = iv["model"].cat.physical().to_numpy().astype(np.int64)
    acc = np.zeros((n_buckets, len(result.gpus), len(names)), dtype=np.float64)
    _bucket_bytes(
        iv["gpu"].to_numpy().astype(np.int64), codes, iv["vram_bytes"].to_numpy(),
        iv["start_ms"].to_numpy(), iv["end_ms"].to_numpy(), np.int64(start_ms),
        np.int64(width_ms), np.int64(n_buckets), len(names), acc,
    )  # fmt: skip
    b, g, m = np.nonzero(acc)
    return pl.DataFrame(
        {
            "bucket": b.astype(np.int64),
            "t_ms": start_ms + b.astype(np.int64) * width_ms,
            "gpu": g.astype(np.int32),
            "model": as_enum(m, names),
            "bytes": acc[b, g, m] / width_ms,
        }
    )
