"""``concerto-lab replay``: a log (or the bundled demo) through Concerto's routing, summarised.

The helpers here (``add_input_args``, ``read_input``, ``add_cluster_args``, ``cluster_from``)
are shared by every subcommand that takes a log and a cluster.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone

import numpy as np

from ..analysis.result import ReplayResult
from ..model.cluster import ConfigError, Crash, Gpu, HealthChange
from ..model.dtypes import QUIRK_FIXES
from ..model.sizes import describe_size
from ..model.trace import Trace
from ..replay import replay


# --- shared argument groups ----------------------------------------------------------------------
def add_input_args(p) -> None:
    p.add_argument("log", nargs="*", metavar="LOG",
                   help="Concerto JSON log(s), or CSV/Parquet/NDJSON request logs; files, "
                        "directories or globs (.gz/.zst read as is). None: the bundled demo.")
    p.add_argument("--format", choices=["auto", "concerto", "csv", "parquet", "ndjson"],
                   default="auto", help="input format (default: guessed from the file)")
    p.add_argument("--time-col", help="timestamp column of a CSV/Parquet/NDJSON request log")
    p.add_argument("--model-col", help="model column of a CSV/Parquet/NDJSON request log")
    p.add_argument("--time-unit", choices=["s", "ms", "us", "ns"],
                   help="unit of numeric epoch timestamps (default: guessed by magnitude)")
    p.add_argument("--strict", action="store_true",
                   help="fail (exit 1) if any request-like line had to be skipped")
    p.add_argument("--config", help="concerto.toml (required with LOG)")


def add_cluster_args(p) -> None:
    p.add_argument("--gpu", action="append", default=[], metavar="SIZE",
                   help="GPU memory, once per GPU in index order (e.g. --gpu 24GB --gpu 48GiB)")
    p.add_argument("--policy", choices=["lru", "lfu", "size_weighted_lru"],
                   help="eviction policy (default: the config's)")
    p.add_argument("--headroom", metavar="SIZE", help="VRAM headroom (default: the config's)")
    p.add_argument("--pin", action="append", default=[], metavar="MODEL",
                   help="pin a model in addition to the config's pins")
    p.add_argument("--unpin-all", action="store_true", help="drop the config's pins first")
    p.add_argument("--health", action="append", default=[], metavar="GPU:STATE@TIME",
                   help="health change during the replay, e.g. 1:Unhealthy@2024-12-03T12:00:00Z")
    p.add_argument("--crash", action="append", default=[], metavar="MODEL@TIME",
                   help="backend crash during the replay, e.g. qwen2.5-7b-instruct@1733227200000")
    p.add_argument("--fix", action="append", default=[], choices=sorted(QUIRK_FIXES),
                   help="opt-in fix of a reference quirk: route_healthy_copy, pin_reason")
    add_startup_args(p)


def add_startup_args(p) -> None:
    """Production's start-up state (instead of --gpu), one snapshot per Concerto start."""
    p.add_argument("--gpus-csv", action="append", default=[], metavar="FILE",
                   help="nvidia-smi --query-gpu=index,name,memory.total,memory.used,"
                        "temperature.gpu,ecc.errors.uncorrected.volatile.total --format=csv "
                        "output taken before a start; once per start, in order")
    p.add_argument("--status", action="append", default=[], metavar="FILE",
                   help="Concerto /status JSON as a start-up snapshot (sizes are rounded)")
    p.add_argument("--nvml", action="store_true",
                   help="read the start-up state from this machine's GPUs through NVML")
    p.add_argument("--no-restarts", action="store_true",
                   help="what-if: ignore the restarts in a Concerto log (keep state across them)")
    p.add_argument("--no-crashes", action="store_true",
                   help="what-if: ignore the backend crashes in a Concerto log")


def startup_snapshots(args, config) -> list:
    """Start-up snapshots from --gpus-csv / --status / --nvml (empty if none was given)."""
    from ..io.startup import read_snapshots

    snaps = read_snapshots(csv_paths=getattr(args, "gpus_csv", []),
                           status_paths=getattr(args, "status", []),
                           nvml=getattr(args, "nvml", False), config=config)  # fmt: skip
    if snaps and args.gpu:
        raise ConfigError("give the GPUs either with --gpu or as a start-up snapshot, not both")
    return snaps


def parse_time_ms(text: str, what: str) -> int:
    """Epoch milliseconds from an integer or an ISO 8601 time (naive times are UTC)."""
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{what}: cannot read time {text!r} (use ISO 8601 or epoch ms)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def events_from(args) -> list:
    events = []
    for spec in args.health:
        try:
            head, when = spec.split("@", 1)
            gpu, state = head.split(":", 1)
            events.append(HealthChange(parse_time_ms(when, f"--health {spec}"), int(gpu), state))
        except ValueError as e:
            why = str(e) if isinstance(e, ConfigError) else "e.g. 1:Unhealthy@2024-12-03T12:00:00Z"
            raise ConfigError(f"--health {spec!r}: expected GPU:STATE@TIME ({why})") from None
    for spec in args.crash:
        model, sep, when = spec.rpartition("@")
        if not sep or not model:
            raise ConfigError(f"--crash {spec!r}: expected MODEL@TIME")
        events.append(Crash(parse_time_ms(when, f"--crash {spec}"), model))
    return events


def read_input(args) -> tuple[Trace, object, tuple, str]:
    """``(trace, config, gpus, label)`` from the arguments, or the bundled demo."""
    from ..io.config import load_config

    if not args.log:
        from .. import demo

        trace, config, gpus = demo.load_demo()
        if args.config:
            config = load_config(args.config)
        label = "bundled demo: Alibaba GenTD26 trace mapped onto data/demo/concerto.toml"
        return trace, config, tuple(args.gpu) or gpus, label
    if not args.config:
        raise ConfigError("--config concerto.toml is required when a LOG is given")
    if has_startup_args(args):
        done = read_production_input(args)
        if done is not None:
            return _with_requests(*done)
    if not args.gpu:
        raise ConfigError("give the GPU memory sizes with --gpu SIZE, once per GPU")
    gpus = tuple(Gpu.of(g, k) for k, g in enumerate(args.gpu))  # fail before reading a big log
    from ..io.inputs import read_requests
    from .cli import DataError

    config = load_config(args.config)
    try:
        trace = read_requests(
            args.log, fmt=args.format, time_col=args.time_col, model_col=args.model_col,
            unit=args.time_unit, strict=args.strict,
        )  # fmt: skip
    except ValueError as e:
        raise DataError(str(e)) from None
    return _with_requests(trace, config, gpus, ", ".join(args.log))


def _with_requests(trace, config, gpus, label):
    """An input without a single usable request is a data error, not an empty summary."""
    if len(trace) == 0:
        from .cli import DataError

        if trace.report is not None:
            print(trace.report.summary(), file=sys.stderr)
        raise DataError(f"{label}: no usable request in the input")
    return trace, config, gpus, label


def has_startup_args(args) -> bool:
    return bool(getattr(args, "gpus_csv", None) or getattr(args, "status", None)
                or getattr(args, "nvml", False))  # fmt: skip


def read_production_input(args):
    """A log replayed from production's start-up snapshots (--gpus-csv / --status / --nvml).

    A Concerto JSON log also brings its restarts (each start with its own snapshot) and backend
    crashes, kept in ``args.production_events`` for ``cluster_from`` (--no-restarts,
    --no-crashes switch them off). Other formats only take the first snapshot's GPUs: returns
    ``None`` after putting them into ``args.gpu`` for the ordinary path.
    """
    import warnings
    from pathlib import Path

    from ..analysis.production import read_production
    from ..io.config import load_config
    from .cli import DataError

    config = load_config(args.config)
    snapshots = startup_snapshots(args, config)
    first = Path(str(args.log[0]))
    suffixes = [x.lower() for x in first.suffixes]
    tabular = bool({".csv", ".parquet", ".pq", ".tsv"} & set(suffixes))
    if args.format == "concerto" or (args.format == "auto" and not tabular):
        try:
            prod = read_production(args.log, snapshots, config, strict=args.strict)
        except OSError as e:
            raise FileNotFoundError(2, str(e), getattr(e, "filename", None) or str(first)) from None
        except ValueError as e:
            if isinstance(e, ConfigError):
                raise
            raise DataError(str(e)) from None
        if len(prod.trace) or args.format == "concerto":
            for note in prod.notes:
                warnings.warn(note, stacklevel=2)
            args.production_events = prod.events(
                restarts=not getattr(args, "no_restarts", False),
                crashes=not getattr(args, "no_crashes", False),
            )  # fmt: skip
            label = f"{', '.join(map(str, args.log))} (Concerto log: {len(prod.starts)} start(s), " \
                    f"{len(prod.crashes)} crash(es))"  # fmt: skip
            return prod.trace, config, snapshots[0], label
    if len(snapshots) > 1:
        warnings.warn("only the first start-up snapshot is used: restarts are read from Concerto "
                      "JSON logs, and this input is not one", stacklevel=2)  # fmt: skip
    args.gpu = list(snapshots[0])
    return None


def cluster_from(args, config) -> dict:
    """Keyword arguments for ``replay`` from the what-if flags."""
    pins = None
    if args.pin or args.unpin_all:
        pins = (set() if args.unpin_all else set(config.pins)) | set(args.pin)
    events = events_from(args) + list(getattr(args, "production_events", ()))
    return dict(policy=args.policy, headroom=args.headroom, pins=pins, events=events,
                fixes=args.fix)  # fmt: skip


# --- the command ---------------------------------------------------------------------------------
def register(sub) -> None:
    p = sub.add_parser(
        "replay",
        help="replay a request log through Concerto's routing and summarise the decisions",
        description="Replay a request log (or, with no LOG, the bundled real trace) through "
                    "Concerto 0.1's exact routing and print what it would have decided.",
    )
    add_input_args(p)
    add_cluster_args(p)
    p.add_argument("--out", metavar="FILE.parquet", help="write per-request decisions to Parquet")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--chart", metavar="FILE.png|FILE.svg",
                   help="write a dashboard image of the main charts (PNG or SVG, offline)")
    p.add_argument("--top", type=int, default=8, help="models to list by cold starts (default 8)")
    p.add_argument("--progress", action="store_true", default=None,
                   help="always show a progress bar (default: only for long inputs)")
    p.set_defaults(func=run)


def run(args) -> int:
    trace, config, gpus, label = read_input(args)
    if trace.report is not None and trace.report.skipped:
        print(trace.report.summary(), file=sys.stderr)
    result = replay(trace, config, gpus, progress=args.progress, **cluster_from(args, config))
    if args.out:
        result.to_parquet(args.out)
    if args.chart:
        from .charts import dashboard, save

        if not args.chart.lower().endswith((".png", ".svg")):
            raise ConfigError(f"--chart {args.chart}: the file name must end in .png or .svg")
        save(dashboard(result), args.chart)
    if args.json:
        summary = result.summary()
        summary["input"] = label
        if trace.report is not None:
            summary["lines_read"] = trace.report.lines_read
            summary["lines_skipped"] = len(trace.report.skipped)
        print(json.dumps(summary))
    else:
        print(render_summary(result, label, top=args.top))
        if args.out:
            print(f"\ndecisions written to {args.out}")
        if args.chart:
            print(f"charts written to {args.chart}")
    return 0


def _decimal_bytes(b: int) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if b >= size:
            return f"{b / size:,.2f} {unit}"
    return f"{b:,} B"


def render_summary(result: ReplayResult, label: str, top: int = 8) -> str:
    s = result.summary()
    n = max(s["requests"], 1)
    t = result.trace
    span = ""
    if len(t):
        first, last = (datetime.fromtimestamp(int(x) / 1000, timezone.utc) for x in (t.t_ms[0], t.t_ms[-1]))
        span = f"  {first:%Y-%m-%d %H:%M:%S} .. {last:%Y-%m-%d %H:%M:%S} UTC"
    pins = ", ".join(s["pins"]) or "none"
    gpus = " + ".join(describe_size(g) for g in s["gpus"])

    def pct(x):
        return f"{100 * x / n:5.1f} %"

    lines = [
        f"input:     {label}",
        f"requests:  {s['requests']:,} for {len(np.unique(t.model))} models{span}",
        f"cluster:   {gpus}",
        f"routing:   policy {s['policy']}, headroom {describe_size(s['headroom_bytes'])}, pins: {pins}",
        "",
        f"  routed (hits)       {s['routed']:>12,}  {pct(s['routed'])}",
        f"  loads (cold starts) {s['loads']:>12,}  {pct(s['loads'])}",
        f"  evictions           {s['evictions']:>12,}",
        f"  rejected            {s['rejected']:>12,}  {pct(s['rejected'])}"
        f"   (unknown {s['rejected_unknown']:,}, pinned {s['rejected_pinned']:,}, "
        f"no_fit {s['rejected_no_fit']:,})",
        f"  bytes loaded        {_decimal_bytes(s['bytes_loaded']):>15}",
    ]
    pm = result.per_model().sort("loads", descending=True).head(top)
    if pm.height:
        lines += ["", f"most cold starts (top {pm.height}):"]
        width = max(len(m) for m in pm["model"].to_list())
        for r in pm.iter_rows(named=True):
            lines.append(
                f"  {r['model']:<{width}}  {r['requests']:>8,} req  {r['loads']:>7,} loads  "
                f"{r['evicted']:>7,} evicted  {r['rejected']:>6,} rejected"
            )
    pg = result.per_gpu()
    lines += ["", "per GPU:"]
    for r in pg.iter_rows(named=True):
        lines.append(
            f"  gpu {r['gpu']}  {describe_size(r['memory_total_bytes'])}  {r['routed']:>9,} routed  "
            f"{r['loads']:>7,} loads  {r['evictions']:>7,} evictions  "
            f"{_decimal_bytes(r['bytes_loaded'])} loaded"
        )
    return "\n".join(lines)
