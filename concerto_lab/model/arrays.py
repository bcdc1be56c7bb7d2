"""Turn a trace, a config, GPUs and events into the structured arrays the kernel reads.

Model codes: the trace's names come first (so request codes need no remapping), then registry
ids and crash targets the trace never mentions. The registry array is indexed by that code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .cluster import ConfigError, Crash, Gpu, HealthChange, Restart, RoutingConfig
from .dtypes import (
    CONTROL_DTYPE,
    EV_CRASH,
    EV_HEALTH,
    EV_RESET,
    GPU_DTYPE,
    HEALTH_NAMES,
    REGISTRY_DTYPE,
)
from .trace import Trace


@dataclass
class KernelInputs:
    names: tuple[str, ...]  # code -> model id (trace names first)
    registry: np.ndarray  # REGISTRY_DTYPE, by code
    gpus: np.ndarray  # GPU_DTYPE, start-up state
    snapshots: np.ndarray  # GPU_DTYPE (n_snapshots, n_gpus), for restarts
    control: np.ndarray  # CONTROL_DTYPE, sorted by pos


def gpu_array(gpus: Sequence[Gpu]) -> np.ndarray:
    a = np.zeros(len(gpus), dtype=GPU_DTYPE)
    for k, g in enumerate(gpus):
        a[k] = (g.total, g.used, g.total - g.used, HEALTH_NAMES.index(g.health))
    return a


def build_inputs(
    trace: Trace, config: RoutingConfig, gpus: Sequence[Gpu], events: Iterable = ()
) -> KernelInputs:
    events = list(events)
    if not gpus:
        raise ConfigError("no GPUs given: pass GPU sizes (e.g. --gpu 24GB --gpu 24GB)")
    names = list(trace.names)
    code = {n: k for k, n in enumerate(names)}

    def code_of(name: str) -> int:
        if name not in code:
            code[name] = len(names)
            names.append(name)
        return code[name]

    for m in config.models:
        code_of(m.id)
    for ev in events:
        if isinstance(ev, Crash):
            code_of(ev.model)

    registry = np.zeros(len(names), dtype=REGISTRY_DTYPE)
    for m in config.models:
        registry[code[m.id]] = (m.vram, m.pin, True)

    start = gpu_array(gpus)
    snaps = [start]
    rows = []
    for ev in sorted(events, key=lambda e: e.t_ms):  # stable: same-ms events keep given order
        pos = ev.pos if ev.pos is not None else int(np.searchsorted(trace.t_ms, ev.t_ms, "left"))
        if isinstance(ev, HealthChange):
            if not 0 <= ev.gpu < len(gpus):
                raise ConfigError(f"health event at {ev.t_ms}: no GPU {ev.gpu} (have {len(gpus)})")
            rows.append((pos, ev.t_ms, EV_HEALTH, ev.gpu, HEALTH_NAMES.index(ev.health)))
        elif isinstance(ev, Crash):
            rows.append((pos, ev.t_ms, EV_CRASH, code[ev.model], 0))
        elif isinstance(ev, Restart):
            snap = gpu_array(ev.gpus) if ev.gpus else start
            if len(snap) != len(start):
                raise ConfigError(
                    f"restart at {ev.t_ms}: snapshot has {len(snap)} GPUs, the node has {len(start)}"
                )
            rows.append((pos, ev.t_ms, EV_RESET, 0, len(snaps)))
            snaps.append(snap)
        else:
            raise TypeError(f"unknown event {ev!r}")
    control = np.array(rows, dtype=CONTROL_DTYPE) if rows else np.zeros(0, dtype=CONTROL_DTYPE)
    control = control[np.argsort(control["pos"], kind="stable")]
    return KernelInputs(tuple(names), registry, start, np.stack(snaps), control)
