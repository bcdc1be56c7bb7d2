"""``concerto-lab verify``: does the replay reproduce the decisions in a production log?

    concerto-lab verify concerto.log.jsonl --config concerto.toml \\
        --gpus-csv start1.csv --gpus-csv start2.csv

Exit code 0 when every request agrees, 1 when any diverges (2 for usage or config errors).
"""

from __future__ import annotations

import sys

from ..model.cluster import ConfigError


def register(sub) -> None:
    from .cli_replay import add_cluster_args, add_input_args

    p = sub.add_parser(
        "verify",
        help="check a replay against the decisions logged in a Concerto JSON log",
        description="Replay a Concerto JSON log from production's start-up state (one snapshot "
                    "per start: --gpus-csv, --status, or --nvml), with its restarts and backend "
                    "crashes, and compare every request's decision with the logged one. Exit "
                    "code 0 on 100 %% agreement, 1 otherwise.",
    )  # fmt: skip
    add_input_args(p)
    add_cluster_args(p)
    p.add_argument("--decisions", metavar="FILE.jsonl",
                   help="write the replayed decisions (oracle layout plus log_line) as JSON lines")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--show", type=int, default=10, metavar="N",
                   help="divergences to print in detail (default 10)")
    p.add_argument("--states", type=int, default=5, metavar="N",
                   help="divergences to show the cluster state before (default 5)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.fidelity import verify
    from ..analysis.production import read_production
    from ..io.config import load_config
    from .cli import DataError
    from .cli_replay import cluster_from, startup_snapshots

    if not args.log:
        raise ConfigError("verify needs a Concerto JSON log (LOG) to compare against")
    if not args.config:
        raise ConfigError("--config concerto.toml is required")
    if args.format not in ("auto", "concerto"):
        raise ConfigError(f"verify reads Concerto JSON logs only, not --format {args.format}")
    config = load_config(args.config)
    snapshots = startup_snapshots(args, config)
    if not snapshots:
        if not args.gpu:
            raise ConfigError(
                "give the start-up state: --gpus-csv FILE once per start (nvidia-smi CSV), "
                "--status FILE (Concerto /status JSON), --nvml, or --gpu SIZE per GPU"
            )
        from ..model.cluster import Gpu

        snapshots = [tuple(Gpu.of(g, k) for k, g in enumerate(args.gpu))]
    try:
        production = read_production(args.log, snapshots, config, strict=args.strict)
    except OSError as e:
        raise FileNotFoundError(2, str(e), getattr(e, "filename", None) or args.log[0]) from None
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise DataError(str(e)) from None
    kw = cluster_from(args, config)
    report = verify(
        production, config, restarts=not args.no_restarts, crashes=not args.no_crashes,
        limit=max(args.show, args.states, 0), states=max(args.states, 0), **kw,
    )  # fmt: skip
    if args.decisions:
        report.write_decisions(args.decisions)
    if args.json:
        print(report.to_json())
    else:
        if production.report is not None and production.report.skipped:
            print(production.report.summary(), file=sys.stderr)
        print(f"log:        {', '.join(args.log)}\nconfig:     {args.config}")
        print(report.render(show=args.show))
        if args.decisions:
            print(f"\ndecisions written to {args.decisions}")
    return 0 if report.ok else 1
