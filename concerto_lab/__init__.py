"""concerto_lab: replay request logs through Concerto 0.1's exact routing logic.

    import concerto_lab as cl
    trace, config, gpus = cl.load_demo()
    result = cl.replay(trace, config, gpus, policy="lfu", headroom="2GB")
    result.summary(); result.decisions; result.per_model()
"""

from .demo import load_demo
from .io.config import load_config, parse_config
from .model.cluster import ConfigError, Crash, Gpu, HealthChange, ModelSpec, Restart, RoutingConfig
from .model.sizes import format_size, parse_size
from .model.trace import IntakeReport, Trace
from .replay import replay
from .analysis.sweep import Grid, load_grid, sweep
from .io.concerto_log import LogError, read_concerto_log, read_log_events
from .io.request_table import merge_traces, read_request_table
from .io.public_traces import read_azure_llm_2023, read_gentd26, read_mooncake_conversation

__all__ = [
    "ConfigError",
    "Crash",
    "Gpu",
    "HealthChange",
    "IntakeReport",
    "ModelSpec",
    "Restart",
    "RoutingConfig",
    "Trace",
    "format_size",
    "load_config",
    "load_demo",
    "parse_config",
    "parse_size",
    "replay",
    "sweep",
    "Grid",
    "load_grid",
    "LogError",
    "read_concerto_log",
    "read_log_events",
    "read_request_table",
    "merge_traces",
    "read_gentd26",
    "read_azure_llm_2023",
    "read_mooncake_conversation",
]
