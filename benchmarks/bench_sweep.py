"""Sweep speed: about 1,000 settings over one 1 M-request trace, local engine, every core.

    python benchmarks/bench_sweep.py            # 1,008 settings x 1 M requests
    python benchmarks/bench_sweep.py --quick    # 144 settings x 200 k requests
    python benchmarks/bench_sweep.py --json

The trace is generated here, seeded: 40 models of 1-40 GB (whole GB), Zipf popularity (s = 1),
millisecond timestamps. The grid is 3 policies x 14 headrooms (0 to 6.5 GB) x 4 pin sets x 3
layouts of 4 GPUs x 2 health scenarios = 1,008 settings.

Reported: the sweep's wall time (compiled code already cached; the first call in a process is
timed separately), settings x requests per second, and the speed-up over running the settings
one by one with ``replay()`` (``--serial`` settings drawn at random from the grid are timed and the mean
is scaled to the whole grid; their summaries are checked against the sweep's rows). It prints
figures and asserts only that equality.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from concerto_lab.analysis.sweep import default_workers, sweep  # noqa: E402
from concerto_lab.analysis.sweep_grid import Grid  # noqa: E402
from concerto_lab.model.cluster import ModelSpec, RoutingConfig  # noqa: E402
from concerto_lab.model.trace import Trace  # noqa: E402
from concerto_lab.replay import replay  # noqa: E402

GB = 10**9
N_MODELS = 40
T0 = 1_700_000_000_000
NAMES = tuple(f"model-{k:02d}" for k in range(N_MODELS))
SUMMARY = ("requests", "routed", "loads", "evictions", "rejected", "rejected_unknown",
           "rejected_pinned", "rejected_no_fit", "bytes_loaded")  # fmt: skip


def make_trace(n: int, seed: int = 1, zipf_s: float = 1.0) -> Trace:
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, N_MODELS + 1) ** zipf_s
    cdf = np.cumsum(w / w.sum())
    model = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), N_MODELS - 1)
    return Trace(T0 + np.cumsum(rng.geometric(0.5, n) - 1), model.astype(np.int32), NAMES)


def make_config() -> RoutingConfig:
    sizes = np.random.default_rng(5).integers(1, 41, N_MODELS) * GB
    return RoutingConfig(models=tuple(ModelSpec(NAMES[k], int(sizes[k])) for k in range(N_MODELS)))


def make_grid(quick: bool) -> Grid:
    if quick:
        headroom = ["0", "1GB", "2GB", "4GB"]
        pins = {"none": [], "top1": [NAMES[0]]}
    else:
        headroom = [f"{h / 2:g}GB" for h in range(14)]
        pins = {"none": [], "top1": [NAMES[0]], "top2": list(NAMES[:2]), "top4": list(NAMES[:4])}
    return Grid(
        policy=["lru", "lfu", "size_weighted_lru"],
        headroom=headroom,
        pins=pins,
        gpus={"4x80GB": ["80GB"] * 4, "4x48GB": ["48GB"] * 4, "2x80+2x40GB": ["80GB"] * 2 + ["40GB"] * 2},
        scenarios={"healthy": [],
                   "gpu3-down": [{"after": "5m", "gpu": 3, "health": "Unhealthy"},
                                 {"after": "6m", "gpu": 3, "health": "Healthy"}]},
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="144 settings x 200 k requests")
    ap.add_argument("--requests", type=int, help="trace length (default 1 M, quick 200 k)")
    ap.add_argument("--serial", type=int, default=48,
                    help="settings timed one by one with replay() for the speed-up (default 48)")
    ap.add_argument("--workers", type=int, help="threads (default: every core)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args()

    n = args.requests or (200_000 if args.quick else 1_000_000)
    trace, config, grid = make_trace(n), make_config(), make_grid(args.quick)
    workers = args.workers or default_workers()

    t = time.perf_counter()
    sweep(trace.slice(None, int(trace.t_ms[999])), config, {"policy": ["lru"]},
          gpus=["80GB"] * 4, progress=False)  # fmt: skip
    first_call = time.perf_counter() - t

    t = time.perf_counter()
    df = sweep(trace, config, grid, workers=workers, progress=not args.json)
    wall = time.perf_counter() - t

    # A seeded random sample: settings differ a lot in cost (cold starts 18 % .. 76 %).
    picks = np.random.default_rng(0).choice(df.height, min(args.serial, df.height), replace=False)
    scen = {c.name: c.value for c in grid.scenarios}
    t = time.perf_counter()
    for k in picks:
        row = df.row(int(k), named=True)
        events = [e.at(int(trace.t_ms[0])) for e in scen[row["scenario"]]]
        s = replay(trace, config, row["gpu_bytes"], policy=row["policy"],
                   headroom=row["headroom_bytes"], pins=row["pinned"], events=events,
                   warn=False).summary()  # fmt: skip
        assert all(s[key] == row[key] for key in SUMMARY), (row, s)
    serial_each = (time.perf_counter() - t) / len(picks)
    serial_all = serial_each * df.height

    work = df.height * n
    out = {
        "settings": df.height,
        "requests": n,
        "workers": workers,
        "sweep_s": round(wall, 2),
        "settings_x_requests_per_s": round(work / wall),
        "per_worker_per_s": round(work / wall / workers),
        "one_by_one_s_per_setting": round(serial_each, 4),
        "one_by_one_s_estimated": round(serial_all, 1),
        "one_by_one_settings_timed": len(picks),
        "speedup": round(serial_all / wall, 2),
        "first_call_s": round(first_call, 2),
        "loads_share_range": [round(float(x), 3) for x in
                              (df["loads"].min() / n, df["loads"].max() / n)],  # fmt: skip
    }
    if args.json:
        print(json.dumps(out))
        return
    print(f"sweep:       {df.height:,} settings x {n:,} requests on {workers} threads: "
          f"{wall:.1f} s")
    print(f"throughput:  {work / wall / 1e6:,.1f} M settings x requests / s "
          f"({work / wall / workers / 1e6:,.1f} M per thread)")
    print(f"one by one:  replay() {serial_each * 1e3:,.0f} ms per setting (mean of {len(picks)}) "
          f"-> {serial_all:,.1f} s for the grid; speed-up {serial_all / wall:.2f}x")
    print(f"first call:  {first_call:.2f} s (Numba cache load or compile, thread start)")
    print(f"cold starts: {out['loads_share_range'][0]:.1%} .. {out['loads_share_range'][1]:.1%} "
          "of requests across the grid")


if __name__ == "__main__":
    main()
