"""``replay(trace, config, gpus, ...)``: the whole user-facing idea in one call.

Arguments are what-if knobs on top of the config (policy, headroom, pins, GPU layout, health
events). The kernel runs in chunks only so a progress bar can move; Python never sees a request.
"""

from __future__ import annotations

import warnings
from typing import Iterable, Sequence

import numpy as np

from .analysis.result import ReplayResult
from .kernels.policies import policy_code
from .kernels.replay import N_ENTRIES, N_EVICTIONS, replay_chunk
from .model.arrays import build_inputs
from .model.cluster import Crash, Gpu, Restart, RoutingConfig
from .model.dtypes import ENTRY_DTYPE, QUIRK_FIXES
from .model.trace import Trace

#: Requests per kernel call when a progress bar is shown.
CHUNK = 4_000_000


def fix_flags(fixes: Iterable[str]) -> int:
    flags = 0
    fixes = [fixes] if isinstance(fixes, str) else fixes
    for name in fixes:
        if name not in QUIRK_FIXES:
            raise ValueError(f"unknown quirk fix {name!r}; expected one of {', '.join(QUIRK_FIXES)}")
        flags |= QUIRK_FIXES[name]
    return flags


def _event_warnings(trace: Trace, config: RoutingConfig, events) -> list[str]:
    """User events that are legal but almost certainly not what was meant."""
    out = []
    first = int(trace.t_ms[0]) if len(trace) else None
    known = set(config.model_ids)
    for ev in events:
        if ev.pos is not None:  # placed by its source (a scenario, a production log)
            continue
        if isinstance(ev, Crash) and ev.model not in known:
            out.append(f"crash of {ev.model!r} at {ev.t_ms}: not in the registry, so it has no effect")
        if first is not None and ev.t_ms < first and not isinstance(ev, Restart):
            out.append(
                f"{type(ev).__name__} at {ev.t_ms} ms is before the first request ({first} ms): "
                "it applies from the start (epoch seconds given as milliseconds?)"
            )
    return out


def replay(
    trace: Trace,
    config: RoutingConfig,
    gpus: Sequence,
    *,
    policy: str | None = None,
    headroom: int | str | None = None,
    pins: Iterable[str] | None = None,
    events: Iterable = (),
    fixes: Iterable[str] = (),
    progress: bool | None = None,
    warn: bool = True,
) -> ReplayResult:
    """Replay ``trace`` through Concerto 0.1's routing on ``gpus`` (sizes or ``Gpu`` objects).

    ``policy``, ``headroom`` and ``pins`` (the exact set of pinned ids) override the config;
    ``events`` are ``HealthChange`` / ``Crash`` / ``Restart``; ``fixes`` names opt-in fixes of
    reference quirks (``"route_healthy_copy"``, ``"pin_reason"``), off by default for fidelity.
    """
    config = config.with_(policy=policy, headroom=headroom, pins=pins)
    gpus = tuple(Gpu.of(g, k) for k, g in enumerate(gpus))
    events = tuple(events)
    if warn:
        for text in config.warnings(gpus) + _event_warnings(trace, config, events):
            warnings.warn(text, stacklevel=2)
    inp = build_inputs(trace, config, gpus, events)
    n = len(trace)
    out_kind = np.empty(n, dtype=np.uint8)
    out_gpu = np.empty(n, dtype=np.int8)
    gpu_state = inp.gpus.copy()
    entries = np.zeros(64, dtype=ENTRY_DTYPE)
    ev_req = np.empty(max(16, n // 64), dtype=np.int64)
    ev_model = np.empty_like(ev_req, dtype=np.int32)
    counters = np.zeros(4, dtype=np.int64)
    args = (inp.control, gpu_state, inp.snapshots, inp.registry, policy_code(config.policy),
            np.int64(config.headroom), np.int64(fix_flags(fixes)))  # fmt: skip

    bar = None
    if progress or (progress is None and n > 2 * CHUNK):
        from tqdm.auto import tqdm

        bar = tqdm(total=n, unit="req", unit_scale=True, desc="replay", leave=False)
    bounds = list(range(0, n, CHUNK if bar else max(n, 1))) + [n]
    for lo, hi in zip(bounds[:-1], bounds[1:]) if n else [(0, 0)]:
        entries, ev_req, ev_model = replay_chunk(
            trace.t_ms, trace.model, lo, hi, *args, entries, counters, ev_req, ev_model,
            out_kind, out_gpu,
        )  # fmt: skip
        if bar:
            bar.update(hi - lo)
    if bar:
        bar.close()
    n_ev = int(counters[N_EVICTIONS])
    return ReplayResult(
        trace=trace,
        config=config,
        gpus=gpus,
        events=events,
        names=inp.names,
        registry=inp.registry,
        kind=out_kind,
        gpu=out_gpu,
        evict_req=ev_req[:n_ev].copy(),
        evict_model=ev_model[:n_ev].copy(),
        final_gpus=gpu_state,
        final_entries=entries[: int(counters[N_ENTRIES])].copy(),
    )
