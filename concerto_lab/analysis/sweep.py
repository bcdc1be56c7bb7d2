"""``sweep(trace, config, grid)``: one replay per grid setting, on every core, as one table.

Each setting runs the same kernel call ``replay`` makes (``replay_chunk`` over the whole trace,
with that setting's GPUs, registry, events, policy and headroom), so a sweep row equals
``replay(...).summary()`` for that setting. The trace is read in place by every thread (and put
once in the Ray object store by the Ray engine): settings fan out, requests never touch Python.

Why threads: ``replay_span`` below is compiled with ``nogil=True``, so one Python thread per
core runs settings side by side on shared arrays, picking the next setting as it finishes one
(no static split, so slow settings do not leave a core idle). Each thread owns its per-request
scratch (one byte of decision and one of GPU per request) and reduces it to counters in the same
jitted call, before the next chunk overwrites it.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import polars as pl
from numba import njit

from ..kernels.policies import policy_code
from ..kernels.replay import N_EVICTIONS, replay_chunk
from ..model.arrays import build_inputs
from ..model.cluster import ConfigError, Crash, Gpu, HealthChange, Restart, RoutingConfig
from ..model.dtypes import ENTRY_DTYPE, LOAD
from ..model.trace import Trace
from ..replay import fix_flags
from .sweep_grid import After, Choice, Grid, GridError, Setting, _label_layout, load_grid

#: Requests per kernel call: the granularity of progress updates and of stopping on Ctrl-C.
CHUNK = 1 << 22

#: Layout of a setting's counter row; the per-GPU blocks follow, ``width`` slots each.
T_ROUTE, T_LOAD, T_UNKNOWN, T_PINNED, T_NO_FIT, T_EVICTIONS, T_BYTES = range(7)
T_GPU = 8

#: Metric columns of a sweep result, in order (names as in ``ReplayResult.summary``).
METRICS = (
    "requests", "routed", "loads", "evictions", "rejected", "rejected_unknown", "rejected_pinned",
    "rejected_no_fit", "routed_share", "bytes_loaded", "gpu_loads", "gpu_evictions",
)  # fmt: skip
#: Setting columns, in order.
SETTING_COLUMNS = (
    "node", "setting", "policy", "headroom", "headroom_bytes", "pins", "pinned", "gpus",
    "gpu_bytes", "n_gpus", "scenario",
)  # fmt: skip


def _kernel_stamp() -> int:
    """A hash of the kernel sources. Numba's cache checks only the file a function lives in, so
    ``replay_span`` captures this value: an edit to the kernel gives it a new cache key."""
    root = Path(__file__).resolve().parent.parent
    files = sorted((root / "kernels").rglob("*.py")) + [root / "model" / "dtypes.py"]
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return int(h.hexdigest()[:15], 16) | 1  # never 0


def _make_replay_span(stamp: int):
    @njit(cache=True, nogil=True)
    def replay_span(
        req_t, req_m, lo, hi, control, gpu_state, snapshots, registry, policy, headroom, fixes,
        entries, counters, ev_req, ev_model, out_kind, out_gpu, tally, width,
    ):  # fmt: skip
        """``replay_chunk`` over ``lo:hi``, then its decisions added to ``tally``."""
        if stamp == 0:  # never true; ties the cache entry to the kernel's source
            return entries, ev_req, ev_model
        entries, ev_req, ev_model = replay_chunk(
            req_t, req_m, lo, hi, control, gpu_state, snapshots, registry, policy, headroom,
            fixes, entries, counters, ev_req, ev_model, out_kind, out_gpu,
        )  # fmt: skip
        for i in range(lo, hi):
            k = out_kind[i]
            tally[k] += 1
            if k == LOAD:
                tally[T_BYTES] += registry[req_m[i]].vram
                tally[T_GPU + out_gpu[i]] += 1
        n_ev = counters[N_EVICTIONS]
        tally[T_EVICTIONS] += n_ev
        for j in range(n_ev):  # per GPU as in ReplayResult.per_gpu: the GPU of the load
            tally[T_GPU + width + out_gpu[ev_req[j]]] += 1
        counters[N_EVICTIONS] = 0  # this chunk's evictions are counted; reuse the buffer
        return entries, ev_req, ev_model

    return replay_span


KERNEL_STAMP = _kernel_stamp()
replay_span = _make_replay_span(KERNEL_STAMP)


@dataclass
class Job:
    """One (node, setting): the small arrays and scalars of its kernel call."""

    node: int
    control: np.ndarray
    gpus: np.ndarray
    snapshots: np.ndarray
    registry: np.ndarray
    policy: int
    headroom: int
    fixes: int


# --- the public call -------------------------------------------------------------------------------
def sweep(
    trace: Trace | Mapping[str, Trace],
    config: RoutingConfig,
    grid: Grid | Mapping | str | Path,
    *,
    gpus: Sequence | None = None,
    engine: str = "local",
    address: str | None = None,
    progress: bool | Callable[[int, int], None] | None = None,
    workers: int | None = None,
    fixes: Iterable[str] = (),
    runtime_env: dict | None = None,
) -> pl.DataFrame:
    """One row per (node, setting): the setting's columns, then a replay's summary metrics.

    ``trace`` is one trace or ``{node name: trace}`` for many node logs (one Concerto node each;
    the ``node`` column tells them apart). ``grid`` is a ``Grid``, a dict of lists or a
    ``grid.toml`` path. ``gpus`` is the layout when the grid has no ``gpus`` dimension.
    ``engine="local"`` uses ``workers`` threads (default: every core); ``engine="ray"`` runs on
    the Ray cluster at ``address`` (default ``RAY_ADDRESS``), shipping this package to it
    unless ``runtime_env`` says otherwise. ``progress``: a bar (True), none (False), a
    ``callback(done, total)`` in requests replayed, or None for a bar on long sweeps only.
    ``fixes`` (quirk fixes, as in ``replay``) apply to every setting.
    """
    nodes = _nodes(trace)
    grid = Grid.of(grid)
    rows, jobs, width = prepare(nodes, config, grid, gpus, fix_flags(fixes))
    arrays = {k: (t.t_ms, t.model) for k, t in enumerate(nodes.values())}
    total = sum(len(arrays[j.node][0]) for j in jobs)
    report, close = _progress(progress, total)
    try:
        if engine == "local":
            tallies = run_local(arrays, jobs, width, workers=workers, progress=report)
        elif engine == "ray":
            from .sweep_ray import run_ray

            tallies = run_ray(arrays, jobs, width, address=address, progress=report,
                              runtime_env=runtime_env)  # fmt: skip
        else:
            raise ConfigError(f"engine: unknown sweep engine {engine!r}; expected 'local' or 'ray'")
    finally:
        close()
    return frame(rows, jobs, tallies, [len(t) for t in nodes.values()])


def _nodes(trace) -> dict[str, Trace]:
    if isinstance(trace, Trace):
        name = (trace.report.source if trace.report is not None else "") or "trace"
        return {name: trace}
    if isinstance(trace, Mapping):
        if not trace:
            raise ConfigError("sweep: no traces given")
        for name, t in trace.items():
            if not isinstance(t, Trace):
                raise TypeError(f"sweep: node {name!r}: expected a Trace, got {type(t).__name__}")
        return {str(k): v for k, v in trace.items()}
    raise TypeError(f"sweep: expected a Trace or {{node: Trace}}, got {type(trace).__name__}")


# --- settings -> kernel inputs (Python, once per distinct combination) ----------------------------
def prepare(nodes: Mapping[str, Trace], config: RoutingConfig, grid: Grid, gpus, fixes: int = 0):
    """Check every grid value against the config and build each job's kernel inputs.

    Returns ``(rows, jobs, width)``: the setting columns per job, the jobs, and the largest GPU
    count (the width of the per-GPU counter blocks). Errors name the grid field.
    """
    where = f"{grid.source}: " if grid.source else ""
    layouts = {}
    for c in grid.gpus:
        if c.value is not None:
            layouts[c.name] = c
        elif gpus is None or len(gpus) == 0:
            raise GridError(f"{where}gpus: no GPU layout: put one in the grid or pass gpus= (--gpu)")
        else:
            layouts[c.name] = Choice(_label_layout(gpus), tuple(Gpu.of(g, k) for k, g in enumerate(gpus)))
    configs = {}
    for c in grid.pins:
        try:
            configs[c.name] = config.with_(pins=c.value)
        except ConfigError as e:
            raise GridError(f"{where}pins.{c.name}: {e}") from None
    for c in grid.scenarios:
        for k, ev in enumerate(c.value):
            for lay in layouts.values():
                if isinstance(ev, (HealthChange, After)) and ev.gpu >= len(lay.value):
                    raise GridError(
                        f"{where}scenarios.{c.name}[{k}].gpu: no GPU {ev.gpu} in layout "
                        f"{lay.name!r} ({len(lay.value)} GPUs)"
                    )
                if not isinstance(ev, (HealthChange, After, Crash, Restart)):
                    raise GridError(f"{where}scenarios.{c.name}[{k}]: not an event: {ev!r}")

    inputs = {}
    rows, jobs = [], []
    settings = grid.settings()
    for node_k, (node, trace) in enumerate(nodes.items()):
        first = int(trace.t_ms[0]) if len(trace) else 0
        for s_k, s in enumerate(settings):
            lay = layouts[s.gpus.name]
            cfg = configs[s.pins.name]
            key = (node_k, s.pins.name, s.gpus.name, s.scenario.name)
            if key not in inputs:
                events = [e.at(first) if isinstance(e, After) else e for e in s.scenario.value]
                try:
                    inputs[key] = build_inputs(trace, cfg, lay.value, events)
                except ConfigError as e:
                    raise GridError(
                        f"{where}scenarios.{s.scenario.name} on layout {lay.name!r}: {e}"
                    ) from None
            inp = inputs[key]
            policy = s.policy.value or cfg.policy
            headroom = cfg.headroom if s.headroom.value is None else s.headroom.value
            jobs.append(Job(node_k, inp.control, inp.gpus, inp.snapshots, inp.registry,
                            policy_code(policy), int(headroom), int(fixes)))  # fmt: skip
            rows.append(
                {
                    "node": node,
                    "setting": s_k,
                    "policy": policy,
                    "headroom": s.headroom.name if s.headroom.value is not None
                    else size_label(headroom),
                    "headroom_bytes": int(headroom),
                    "pins": s.pins.name,
                    "pinned": sorted(cfg.pins),
                    "gpus": lay.name,
                    "gpu_bytes": [int(g.total) for g in lay.value],
                    "n_gpus": len(lay.value),
                    "scenario": s.scenario.name,
                }
            )
    width = max((len(j.gpus) for j in jobs), default=1)
    return rows, jobs, width


def size_label(b: int) -> str:
    """Exact short text for a byte count: ``2GB``, ``512MiB``, ``0``, else plain bytes."""
    if b == 0:
        return "0"
    for unit, f in (("TiB", 2**40), ("TB", 10**12), ("GiB", 2**30), ("GB", 10**9),
                    ("MiB", 2**20), ("MB", 10**6)):  # fmt: skip
        if b % f == 0:
            return f"{b // f}{unit}"
    return str(b)


# --- the local engine --------------------------------------------------------------------------
def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def run_local(
    arrays: Mapping[int, tuple[np.ndarray, np.ndarray]],
    jobs: Sequence[Job],
    width: int,
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    chunk: int = CHUNK,
) -> np.ndarray:
    """Counter rows ``(len(jobs), T_GPU + 2 * width)`` for ``jobs`` over the node ``arrays``.

    ``workers`` threads each take the next job when done with one (longest traces first).
    ``progress(n)`` is called from this thread with the requests replayed since the last call.
    """
    out = np.zeros((len(jobs), T_GPU + 2 * width), dtype=np.int64)
    if not jobs:
        return out
    workers = max(1, min(workers or default_workers(), len(jobs)))
    order = iter(sorted(range(len(jobs)), key=lambda j: -len(arrays[jobs[j].node][0])))
    lock = threading.Lock()
    stop = threading.Event()
    done = [0]
    n_max = max(len(arrays[j.node][0]) for j in jobs)
    # Read-only views: Ray hands tasks read-only arrays, and numba compiles one version per
    # flag, so local and Ray runs share one compiled (and cached) replay_span.
    arrays = {k: (_readonly(t), _readonly(m)) for k, (t, m) in arrays.items()}

    def work():
        out_kind = np.empty(n_max, dtype=np.uint8)
        out_gpu = np.empty(n_max, dtype=np.int8)
        ev_req = np.empty(max(16, min(n_max, chunk) // 64), dtype=np.int64)
        ev_model = np.empty_like(ev_req, dtype=np.int32)
        while not stop.is_set():
            with lock:
                j = next(order, None)
            if j is None:
                return
            job = jobs[j]
            req_t, req_m = arrays[job.node]
            n = len(req_t)
            # Fresh state per setting, exactly as ``replay`` starts one.
            entries = np.zeros(64, dtype=ENTRY_DTYPE)
            counters = np.zeros(4, dtype=np.int64)
            gpu_state = job.gpus.copy()
            bounds = list(range(0, n, chunk)) + [n] if n else [0, 0]
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                entries, ev_req, ev_model = replay_span(
                    req_t, req_m, lo, hi, job.control, gpu_state, job.snapshots, job.registry,
                    job.policy, np.int64(job.headroom), np.int64(job.fixes), entries, counters,
                    ev_req, ev_model, out_kind, out_gpu, out[j], width,
                )  # fmt: skip
                with lock:
                    done[0] += hi - lo
                if stop.is_set() and hi < n:
                    return

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sweep")
    futures = [pool.submit(work) for _ in range(workers)]
    reported = 0
    try:
        while True:
            finished, pending = wait(futures, timeout=0.2, return_when=FIRST_EXCEPTION)
            if progress is not None:
                with lock:
                    now = done[0]
                if now > reported:
                    progress(now - reported)
                    reported = now
            for f in finished:
                if f.exception() is not None:
                    raise f.exception()
            if not pending:
                break
    except BaseException:
        stop.set()  # Ctrl-C or an error: threads stop after their current chunk
        raise
    finally:
        pool.shutdown(wait=True)
    return out


def _readonly(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


def _progress(progress, total: int):
    """``(report(n), close())`` for the ``progress`` argument of ``sweep``."""
    if progress is None:
        progress = total >= 200_000_000  # about five seconds or more on one core
    if progress is False or progress is None:
        return None, lambda: None
    if callable(progress) and progress is not True:
        state = [0]

        def report(n):
            state[0] += n
            progress(state[0], total)

        return report, lambda: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="req", unit_scale=True, desc="sweep", leave=False,
               smoothing=0.1)  # fmt: skip
    return bar.update, bar.close


# --- counters -> table ---------------------------------------------------------------------------
def frame(rows: list[dict], jobs: Sequence[Job], tallies: np.ndarray, lengths: Sequence[int]):
    """The result table: setting columns from ``rows``, metrics from the counter rows."""
    width = (tallies.shape[1] - T_GPU) // 2
    n_gpus = np.array([len(j.gpus) for j in jobs], dtype=np.int64)
    requests = np.array([lengths[j.node] for j in jobs], dtype=np.int64)
    routed = tallies[:, T_ROUTE]
    rejected = tallies[:, T_UNKNOWN] + tallies[:, T_PINNED] + tallies[:, T_NO_FIT]
    share = np.divide(routed, requests, out=np.zeros(len(jobs)), where=requests > 0)
    gl = tallies[:, T_GPU : T_GPU + width]
    ge = tallies[:, T_GPU + width :]
    metrics = {
        "requests": requests,
        "routed": routed,
        "loads": tallies[:, T_LOAD],
        "evictions": tallies[:, T_EVICTIONS],
        "rejected": rejected,
        "rejected_unknown": tallies[:, T_UNKNOWN],
        "rejected_pinned": tallies[:, T_PINNED],
        "rejected_no_fit": tallies[:, T_NO_FIT],
        "routed_share": share,
        "bytes_loaded": tallies[:, T_BYTES],
        "gpu_loads": _lists(gl, n_gpus),
        "gpu_evictions": _lists(ge, n_gpus),
    }
    schema = {
        "node": pl.String, "setting": pl.Int64, "policy": pl.String, "headroom": pl.String,
        "headroom_bytes": pl.Int64, "pins": pl.String, "pinned": pl.List(pl.String),
        "gpus": pl.String, "gpu_bytes": pl.List(pl.Int64), "n_gpus": pl.Int64,
        "scenario": pl.String,
    }  # fmt: skip
    settings = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    return settings.with_columns(
        **{k: (v if isinstance(v, pl.Series) else pl.Series(k, v)) for k, v in metrics.items()}
    ).select(*SETTING_COLUMNS, *METRICS)


def _lists(block: np.ndarray, lengths: np.ndarray) -> pl.Series:
    """Row ``k`` of ``block`` cut to ``lengths[k]``, as a List column (never a fixed Array)."""
    return pl.Series([block[k, : lengths[k]].tolist() for k in range(len(lengths))],
                     dtype=pl.List(pl.Int64))  # fmt: skip


__all__ = ["sweep", "Grid", "load_grid", "prepare", "run_local", "frame", "METRICS",
           "SETTING_COLUMNS"]  # fmt: skip
