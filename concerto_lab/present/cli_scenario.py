"""``concerto-lab run-scenario FILE.json``: decisions in the oracle's exact output format.

This is how fidelity is checked from outside, so its output is a stable interface: one JSON
object per request, keys in the oracle's order, nothing else on stdout.
"""

from __future__ import annotations

import json
import sys

from ..io.scenario import load_scenario
from ..model.dtypes import QUIRK_FIXES
from ..replay import replay


def register(sub) -> None:
    p = sub.add_parser(
        "run-scenario",
        help="replay an oracle-format scenario and print its decisions as JSON lines",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("scenario", help="scenario JSON (oracle format, section 1 of its README)")
    p.add_argument("--final-state", action="store_true",
                   help="print the final cluster state (oracle final_state layout) after the lines")
    p.add_argument("--fix", action="append", default=[], choices=sorted(QUIRK_FIXES),
                   help="opt-in fix of a reference quirk (route_healthy_copy, pin_reason)")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        sc = load_scenario(args.scenario)
    except (KeyError, TypeError, ValueError) as e:
        from .cli import DataError

        raise DataError(f"{args.scenario}: not a valid scenario: {e}") from None
    result = replay(sc.trace, sc.config, sc.gpus, events=sc.events, fixes=args.fix, warn=False)
    out = sys.stdout
    for line in result.oracle_lines():
        out.write(json.dumps(line, separators=(",", ":")) + "\n")
    if args.final_state:
        out.write(json.dumps({"name": sc.name, "requests": len(sc.trace),
                              "gpus": result.final_state()}) + "\n")
    return 0
