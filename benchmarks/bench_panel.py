"""How long one change of the tuning panel takes on a 1 M-request trace (and the charts on 10 M).

    python benchmarks/bench_panel.py                  # 1 M requests
    python benchmarks/bench_panel.py --requests 10000000

The trace is the bundled demo's real model mix (its 86 ids in their request shares) stretched to
the requested length over 60 days, replayed on the demo config and two 24 GiB GPUs. A panel is
built once (which also warms the compiled kernels), then the headroom slider is moved several
times; for each move it prints the replay alone, replay + every chart's aggregation, and the
whole update including rendering the visible chart to SVG. Figures only, no thresholds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def synthetic(n: int, seed: int = 1):
    from concerto_lab.demo import load_demo
    from concerto_lab.model.trace import Trace

    trace, config, gpus = load_demo()
    share = np.bincount(trace.model, minlength=len(trace.names)).astype(float)
    rng = np.random.default_rng(seed)
    codes = rng.choice(len(share), size=n, p=share / share.sum()).astype(np.int32)
    t = 1_733_011_200_000 + np.sort(rng.integers(0, 60 * 86_400_000, n))
    return Trace(t, codes, trace.names), config, gpus


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--moves", type=int, default=5)
    args = ap.parse_args()

    from concerto_lab.analysis.occupancy import residency
    from concerto_lab.present import charts as C
    from concerto_lab.present.panel import HEADROOM_STEP, TuningPanel
    from concerto_lab.replay import replay

    trace, config, gpus = synthetic(args.requests)
    t0 = time.perf_counter()
    panel = TuningPanel(trace, config, gpus)
    print(f"trace: {len(trace):,} requests, {len(trace.names)} models; panel built in "
          f"{time.perf_counter() - t0:.2f} s (includes one-time start-up)")  # fmt: skip

    rows = []
    for k in range(args.moves):
        h = config.headroom + (k + 1) * HEADROOM_STEP
        a = time.perf_counter()
        r = replay(trace, config, gpus, headroom=h, warn=False)
        b = time.perf_counter()
        iv = residency(r)
        C.decisions_data(r), C.occupancy_data(r, intervals=iv), C.churn_data(r)
        C.evictions_matrix(r), C.compare_data({"start": panel.baseline, "now": r})
        c = time.perf_counter()
        panel.headroom.value = h
        d = time.perf_counter()
        rows.append((b - a, c - a, d - c, r.summary()["loads"]))
        print(f"  headroom {h / 1e9:.1f} GB: replay {1000 * (b - a):7.1f} ms   replay + chart "
              f"data {1000 * (c - a):7.1f} ms   panel update incl. SVG {1000 * (d - c):7.1f} ms   "
              f"({rows[-1][3]:,} cold starts)")  # fmt: skip
    med = [statistics.median(x[i] for x in rows) for i in range(3)]
    print(f"median: replay {1000 * med[0]:.1f} ms ({len(trace) / med[0] / 1e6:.0f} M req/s), "
          f"replay + chart data {1000 * med[1]:.1f} ms, full panel update {1000 * med[2]:.1f} ms")


if __name__ == "__main__":
    main()
