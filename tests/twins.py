"""Run one oracle-format scenario dict through the kernel and through the reference, and put
both answers in the same shape, so a test compares them with one ``==``.

A decision is ``(decision, gpu, evict_ids, reject_kind)``; a state is the oracle's
``final_state`` GPU list. ``KernelStepper`` drives the kernel one request at a time with its
state carried between calls, for invariants that need the state around each decision.
"""

from __future__ import annotations

import numpy as np

from concerto_lab import reference
from concerto_lab.analysis.result import cluster_state
from concerto_lab.io.scenario import scenario_from_dict
from concerto_lab.kernels.policies import policy_code
from concerto_lab.kernels.replay import N_ENTRIES, N_EVICTIONS, replay_chunk
from concerto_lab.model.arrays import build_inputs
from concerto_lab.model.dtypes import DECISION_NAMES, ENTRY_DTYPE, REASON_KINDS
from concerto_lab.model.trace import Trace
from concerto_lab.replay import fix_flags, replay


def kernel_run(sc: dict, fixes=()) -> tuple[list[tuple], list[dict]]:
    """Decisions and final state from ``concerto_lab.replay.replay`` (the Numba kernel)."""
    s = scenario_from_dict(sc)
    r = replay(s.trace, s.config, s.gpus, events=s.events, fixes=fixes, warn=False)
    evicts: dict[int, list[str]] = {}
    for i, c in zip(r.evict_req.tolist(), r.evict_model.tolist()):
        evicts.setdefault(i, []).append(r.names[c])
    decisions = [
        (DECISION_NAMES[k], g if g >= 0 else None, tuple(evicts.get(i, ())), REASON_KINDS[k])
        for i, (k, g) in enumerate(zip(r.kind.tolist(), r.gpu.tolist()))
    ]
    return decisions, r.final_state()


def as_tuple(d: reference.Decision) -> tuple:
    return (d.decision, d.gpu, tuple(d.evict), d.reject_kind)


def reference_run(sc: dict, fixes=()) -> tuple[list[tuple], list[dict]]:
    """Decisions and final state from the pure-Python reference."""
    decisions, router = reference.run_scenario(sc, fixes=fix_flags(fixes))
    return [as_tuple(d) for d in decisions], router.state()


def first_difference(sc: dict, fixes=()) -> str | None:
    """``None`` when kernel and reference agree on everything, else where they first part."""
    kd, ks = kernel_run(sc, fixes)
    rd, rs = reference_run(sc, fixes)
    if len(kd) != len(rd):
        return f"{len(kd)} kernel decisions vs {len(rd)} reference decisions"
    for i, (k, r) in enumerate(zip(kd, rd)):
        if k != r:
            return f"request {i}: kernel {k} != reference {r}"
    if ks != rs:
        return f"final state differs:\nkernel    {ks}\nreference {rs}"
    return None


class KernelStepper:
    """The kernel, one request per ``replay_chunk`` call, state carried as in chunked replays.

    After ``step(i)`` the state is the kernel's cluster right after request ``i`` (control events
    placed before request ``i`` included, those before ``i + 1`` not yet). The kernel applies the
    trailing control events when a chunk reaches the end of the trace, so the stepper appends
    one sentinel request for an id outside the registry (a reject that changes nothing) and only
    ``finish()`` reaches that end.
    """

    SENTINEL = "\x00end-of-trace"

    def __init__(self, sc: dict, fixes=()):
        s = scenario_from_dict(sc)
        t_end = int(s.trace.t_ms[-1]) if len(s.trace) else 0
        self.trace = Trace.from_columns(
            [*s.trace.t_ms.tolist(), t_end],
            [*(s.trace.names[c] for c in s.trace.model.tolist()), self.SENTINEL],
        )
        inp = build_inputs(self.trace, s.config, s.gpus, s.events)
        self.names = inp.names
        self.n = len(s.trace)
        self.kind = np.empty(self.n + 1, dtype=np.uint8)
        self.gpu = np.empty(self.n + 1, dtype=np.int8)
        self.gpus = inp.gpus.copy()
        self.entries = np.zeros(4, dtype=ENTRY_DTYPE)  # tiny on purpose: growth is exercised
        self.ev_req = np.empty(4, dtype=np.int64)
        self.ev_model = np.empty(4, dtype=np.int32)
        self.counters = np.zeros(4, dtype=np.int64)
        self.n_evicted = 0
        self.args = (inp.control, self.gpus, inp.snapshots, inp.registry,
                     policy_code(s.config.policy), np.int64(s.config.headroom),
                     np.int64(fix_flags(fixes)))  # fmt: skip

    def step(self, i: int) -> tuple:
        """Replay request ``i`` (and, for the last one, the trailing control events)."""
        self.entries, self.ev_req, self.ev_model = replay_chunk(
            self.trace.t_ms, self.trace.model, i, i + 1, *self.args, self.entries, self.counters,
            self.ev_req, self.ev_model, self.kind, self.gpu,
        )  # fmt: skip
        n_ev = int(self.counters[N_EVICTIONS])
        evict = tuple(self.names[c] for c in self.ev_model[self.n_evicted:n_ev].tolist())
        self.n_evicted = n_ev
        k, g = int(self.kind[i]), int(self.gpu[i])
        return (DECISION_NAMES[k], g if g >= 0 else None, evict, REASON_KINDS[k])

    def state(self) -> list[dict]:
        return cluster_state(self.gpus, self.entries[: int(self.counters[N_ENTRIES])], self.names)

    def finish(self) -> None:
        """Apply the control events after the last request (through the sentinel request)."""
        assert self.step(self.n) == ("reject", None, (), "unknown")


def make_router(sc: dict, fixes=()) -> reference.Router:
    """A reference router at the scenario's start, for stepping it event by event."""
    cfg = sc["config"]
    return reference.Router(
        gpus=[reference.Gpu(id=g["id"], memory_total=g["memory_total_bytes"], health=g["health"])
              for g in sc["gpus"]],
        models=[{"id": m["id"], "vram": m["vram_required_bytes"], "pin": m.get("pin", False)}
                for m in sc["models"]],
        policy=cfg["eviction_policy"],
        headroom=cfg["vram_headroom_bytes"],
        fixes=fix_flags(fixes),
    )  # fmt: skip
