"""``concerto-lab``: the command line.

Each subcommand lives in its own module with ``register(subparsers)``; this file only wires them
and turns user errors into one clear line and an exit code (2 usage/config, 1 data, 0 ok),
never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from ..model.cluster import ConfigError
from ..model.sizes import SizeError

#: Modules under concerto_lab.present that add a subcommand (add yours here).
COMMANDS = ["cli_replay", "cli_scenario", "cli_verify", "cli_sweep"]


class DataError(Exception):
    """Input data a command cannot use (exit code 1)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="concerto-lab",
        description="Replay request logs through Concerto 0.1's exact routing logic.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.{name}").register(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"concerto-lab: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return int(args.func(args) or 0)
    except (ConfigError, SizeError) as e:
        print(f"concerto-lab: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"concerto-lab: error: {e.filename or e}: no such file", file=sys.stderr)
        return 2
    except OSError as e:  # unreadable paths, globs matching nothing, empty log directories
        print(f"concerto-lab: error: {e}", file=sys.stderr)
        return 2
    except DataError as e:
        print(f"concerto-lab: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
