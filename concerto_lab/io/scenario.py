"""Oracle scenarios (``tests/oracle/README.md``): the format fidelity is checked in.

A scenario holds its GPUs, registry, config and one event stream; requests become the trace and
health/crash events keep their exact place among them (``pos``), as the file orders them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..model.cluster import Crash, Gpu, HealthChange, ModelSpec, RoutingConfig
from ..model.trace import Trace


@dataclass
class Scenario:
    name: str
    trace: Trace
    config: RoutingConfig
    gpus: tuple[Gpu, ...]
    events: tuple


def scenario_from_dict(d: dict, source: str = "") -> Scenario:
    cfg = d["config"]
    config = RoutingConfig(
        models=tuple(
            ModelSpec(m["id"], int(m["vram_required_bytes"]), bool(m.get("pin", False)))
            for m in d["models"]
        ),
        policy=cfg["eviction_policy"],
        headroom=int(cfg["vram_headroom_bytes"]),
        source=source,
    )
    for k, g in enumerate(d["gpus"]):
        if g.get("id", k) != k:
            raise ValueError(f"{source}: gpus[{k}].id is {g['id']}, expected {k}")
    gpus = tuple(
        Gpu(total=int(g["memory_total_bytes"]), health=g.get("health", "Healthy")) for g in d["gpus"]
    )
    times, models, events = [], [], []
    for k, ev in enumerate(d["events"]):
        kind, t = ev["kind"], int(ev["t_ms"])
        if kind == "request":
            times.append(t)
            models.append(ev["model"])
        elif kind == "health":
            events.append(HealthChange(t, int(ev["gpu"]), ev["health"], pos=len(times)))
        elif kind == "crash":
            events.append(Crash(t, ev["model"], pos=len(times)))
        else:
            raise ValueError(f"{source}: events[{k}].kind: unknown event kind {kind!r}")
    if any(b < a for a, b in zip(times, times[1:])):
        raise ValueError(f"{source}: request times decrease; scenario events must be in time order")
    trace = Trace.from_columns(times, models)
    return Scenario(d.get("name", Path(source).stem), trace, config, gpus, tuple(events))


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    with path.open() as f:
        return scenario_from_dict(json.load(f), source=str(path))
