"""The bundled demo: a real multi-model trace, a realistic registry, and a GPU layout.

The Alibaba GenTD26 trace (86 anonymised models, 26,823 requests over 23 days) is mapped onto
LLM ids by ``data/demo/model_map.csv``; sizes and their sources are in that file. Two 24 GiB
GPUs make eviction matter: the four most requested models alone need about 51 GiB.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from .io.config import load_config
from .model.cluster import RoutingConfig
from .model.trace import Trace

DATA = Path(__file__).resolve().parent.parent / "data"
DEMO = DATA / "demo"
DEMO_CONFIG = DEMO / "concerto.toml"
DEMO_GPUS = ("24GiB", "24GiB")


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            path, f"{path} is missing: the demo data ships in the repository's data/ folder; "
            "install from a clone with `pip install -e .`",
        )
    return path


def demo_trace() -> Trace:
    """The GenTD26 trace with its model ids mapped onto the demo registry's LLM ids."""
    from .io.public_traces import read_gentd26

    mapping = pl.read_csv(_require(DEMO / "model_map.csv"))
    trace = read_gentd26()
    return trace.rename(dict(zip(mapping["trace_id"], mapping["model"])))


def load_demo() -> tuple[Trace, RoutingConfig, tuple[str, ...]]:
    """``(trace, config, gpus)`` ready for ``replay(*load_demo())``."""
    return demo_trace(), load_config(_require(DEMO_CONFIG)), DEMO_GPUS
