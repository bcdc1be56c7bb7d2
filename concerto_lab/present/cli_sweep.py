"""``concerto-lab sweep``: one replay per setting of a grid, ranked; the full table to Parquet.

Logs and the config are read as ``replay`` reads them (its shared helpers); with no LOG the
bundled demo and its grid (``data/demo/grid.toml``) are used. The progress bar goes to stderr,
the ranked table to stdout.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

from ..analysis.sweep_grid import Grid, load_grid
from ..model.cluster import ConfigError
from ..model.dtypes import QUIRK_FIXES
from .cli_replay import add_input_args, read_input

DEMO_GRID = Path(__file__).resolve().parents[2] / "data" / "demo" / "grid.toml"


def register(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="replay a log under every setting of a grid (policy, headroom, pins, GPUs, events)",
        description="Replay a request log (or, with no LOG, the bundled demo) once per setting "
                    "of a grid file and rank the settings by rejects, then cold starts.",
    )
    add_input_args(p)
    p.add_argument("--grid", metavar="grid.toml",
                   help="the settings to sweep (format: concerto_lab/analysis/sweep_grid.py); "
                        "default with no LOG: data/demo/grid.toml")
    p.add_argument("--gpu", action="append", default=[], metavar="SIZE",
                   help="GPU memory, once per GPU, when the grid has no `gpus` layouts")
    p.add_argument("--fix", action="append", default=[], choices=sorted(QUIRK_FIXES),
                   help="opt-in fix of a reference quirk for every setting: route_healthy_copy, "
                        "pin_reason")
    p.add_argument("--nodes", action="store_true",
                   help="each LOG is a separate Concerto node (swept together, `node` column; "
                        "the ranked table sums the nodes)")
    p.add_argument("--out", metavar="FILE.parquet", help="write the full result table to Parquet")
    p.add_argument("--chart", metavar="FILE",
                   help="heatmap of cold starts over headroom x policy (.svg, .png or .html)")
    p.add_argument("--top", type=int, default=10, help="settings to list (default 10)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: every core of this machine (default); ray: a Ray cluster")
    p.add_argument("--address", metavar="HOST:PORT",
                   help="Ray cluster address (default: RAY_ADDRESS)")
    p.add_argument("--workers", type=int, help="threads for the local engine (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.chart and not args.chart.lower().endswith((".svg", ".png", ".html")):
        raise ConfigError(f"--chart {args.chart}: the file name must end in .svg, .png or .html")
    from ..analysis.sweep import sweep
    from ..analysis.sweep_view import combine_nodes, format_table, heatmap, ranked

    grid_path = args.grid or (DEMO_GRID if not args.log else None)
    if grid_path is None:
        raise ConfigError("--grid grid.toml is required when a LOG is given")
    grid = load_grid(grid_path)  # fail on a bad grid before reading a big log
    traces, config, gpus, label = _read(args, grid)
    for t in traces.values():
        if t.report is not None and t.report.skipped:
            print(t.report.summary(), file=sys.stderr)
    t0 = time.perf_counter()
    df = sweep(traces, config, grid, gpus=gpus, engine=args.engine, address=args.address,
               progress=not args.no_progress, workers=args.workers, fixes=args.fix)  # fmt: skip
    dt = time.perf_counter() - t0
    work = int(df["requests"].sum())
    if args.out:
        df.write_parquet(args.out)
    if args.chart:
        heatmap(df).save(args.chart)
    nodes = df["node"].n_unique()
    fleet = combine_nodes(df)
    print(f"input:     {label}")
    print(f"grid:      {grid_path}: {len(grid)} settings"
          + (f" x {nodes} nodes (ranked on their sum)" if nodes > 1 else ""))  # fmt: skip
    print(f"swept:     {df.height:,} replays, {work:,} requests in {dt:.1f} s "
          f"({work / max(dt, 1e-9) / 1e6:,.1f} M requests/s, engine {args.engine})")
    print()
    print(format_table(ranked(fleet, args.top), max_rows=args.top))
    if args.out:
        print(f"\nresults written to {args.out}")
    if args.chart:
        print(f"heatmap written to {args.chart}")
    return 0


def _read(args, grid: Grid):
    """``({node: trace}, config, gpus, label)`` through ``replay``'s input helpers."""
    if not args.gpu and args.log and grid.gpus[0].value is not None:
        # The grid's layouts are used; ``read_input`` only checks that GPUs are given.
        args = copy.copy(args)
        args.gpu = [str(g.total) for g in grid.gpus[0].value]
        grid_gpus = True
    else:
        grid_gpus = False
    if not (args.nodes and len(args.log) > 1):
        trace, config, gpus, label = read_input(args)
        return {_node_name(args.log): trace}, config, (None if grid_gpus else gpus), label
    traces = {}
    for log in args.log:
        one = copy.copy(args)
        one.log = [log]
        trace, config, gpus, _ = read_input(one)
        traces[_node_name([log])] = trace
    return traces, config, (None if grid_gpus else gpus), ", ".join(args.log)


def _node_name(logs) -> str:
    if not logs:
        return "demo"
    return Path(logs[0]).name if len(logs) == 1 else "all"
