"""The executable spec: Concerto 0.1 routing, written to be read next to the oracle README.

Slow on purpose: plain lists and dicts, one short step per rule. The Numba kernels must give the
same decisions and the same final state on every input; the tests hold them to it. Section
numbers refer to the oracle README (``tests/oracle/README.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .model.dtypes import FIX_PIN_REASON, FIX_ROUTE_HEALTHY_COPY

HEALTHY, DEGRADED, UNHEALTHY = "Healthy", "Degraded", "Unhealthy"


@dataclass
class Entry:
    model: str
    vram: int
    last_request_t: int
    request_count: int = 1


@dataclass
class Gpu:
    id: int
    memory_total: int
    health: str = HEALTHY
    used: int = 0
    available: int = -1
    loaded: list[Entry] = field(default_factory=list)  # list order = tie-break order

    def __post_init__(self):
        if self.available < 0:
            self.available = self.memory_total - self.used


@dataclass(frozen=True)
class Decision:
    decision: str  # "route" | "load" | "reject"
    gpu: int | None = None
    evict: tuple[str, ...] = ()
    reject_kind: str | None = None  # "unknown" | "pinned" | "no_fit"


class Router:
    """Cluster state plus the decision procedure (section 3) and the orchestrator's updates."""

    def __init__(self, gpus, models, policy="lru", headroom=1_000_000_000, fixes=0):
        self.gpus = [Gpu(**g) if isinstance(g, dict) else g for g in gpus]
        self.vram = {m["id"]: m["vram"] for m in models}
        self.pinned = {m["id"] for m in models if m.get("pin")}
        self.policy = policy
        self.headroom = headroom
        self.fixes = fixes

    # --- section 3: the decision ---------------------------------------------------------------
    def decide(self, model: str, t: int) -> Decision:
        # Step 1: the first GPU in index order holding any copy decides (quirk Q1).
        holder = next((g for g in self.gpus if any(e.model == model for e in g.loaded)), None)
        if holder is not None and holder.health != UNHEALTHY:
            return Decision("route", holder.id)
        if holder is not None and self.fixes & FIX_ROUTE_HEALTHY_COPY:
            healthy = next(
                (g for g in self.gpus
                 if g.health != UNHEALTHY and any(e.model == model for e in g.loaded)),
                None,
            )  # fmt: skip
            if healthy is not None:
                return Decision("route", healthy.id)
        # Step 2: unknown ids are rejected before any placement.
        if model not in self.vram:
            return Decision("reject", reject_kind="unknown")
        need = self.vram[model] + self.headroom
        usable = [g for g in self.gpus if g.health != UNHEALTHY]
        # Step 3: direct placement: Healthy first, then most available, then lowest index.
        fits = [g for g in usable if g.available >= need]
        if fits:
            best = min(fits, key=lambda g: (g.health != HEALTHY, -g.available, g.id))
            return Decision("load", best.id)
        # Step 4: eviction, GPU by GPU, most available first, health ignored.
        for g in sorted(usable, key=lambda g: (-g.available, g.id)):
            plan = self._eviction_plan(g, need - g.available, t)
            if plan is not None:
                return Decision("load", g.id, tuple(plan))
        # Step 5: reject; the pin reason wins whenever a pinned copy sits on a usable GPU (Q7).
        return Decision("reject", reject_kind=self._reject_kind(usable, need))

    def _eviction_plan(self, gpu: Gpu, deficit: int, t: int) -> list[str] | None:
        candidates = [e for e in gpu.loaded if e.model not in self.pinned]
        candidates.sort(key=lambda e: self._policy_key(e, t))  # stable: ties keep list order
        freed, evict = 0, []
        for e in candidates:
            if freed >= deficit:
                break
            freed += e.vram
            evict.append(e.model)
        return evict if freed >= deficit else None

    def _policy_key(self, e: Entry, t: int):
        """Section 4: smaller key = evicted first."""
        if self.policy == "lru":
            return e.last_request_t
        if self.policy == "lfu":
            return e.request_count
        if self.policy == "size_weighted_lru":
            staleness_s = max(1, (t - e.last_request_t) // 1000)
            return -(float(staleness_s) * float(e.vram))  # highest score first
        raise ValueError(f"unknown policy {self.policy!r}")

    def _reject_kind(self, usable: list[Gpu], need: int) -> str:
        holders = [g for g in usable if any(e.model in self.pinned for e in g.loaded)]
        if self.fixes & FIX_PIN_REASON:
            # Only where evicting the pinned copies too would have made room.
            holders = [g for g in holders if g.available + sum(e.vram for e in g.loaded) >= need]
        return "pinned" if holders else "no_fit"

    # --- the orchestrator's state changes --------------------------------------------------------
    def apply(self, model: str, t: int, d: Decision) -> None:
        if d.decision == "route":
            entry = next(e for e in self.gpus[d.gpu].loaded if e.model == model)
            entry.last_request_t = t
            entry.request_count += 1
        elif d.decision == "load":
            for victim in d.evict:
                self.remove_everywhere(victim)  # Q5: by id, on every GPU
            g = self.gpus[d.gpu]
            g.loaded.append(Entry(model, self.vram[model], t))
            g.used += self.vram[model]
            g.available = max(0, g.available - self.vram[model])

    def remove_everywhere(self, model: str) -> None:
        """Eviction and crash: every copy of the id goes and its memory comes back."""
        for g in self.gpus:
            freed = sum(e.vram for e in g.loaded if e.model == model)
            if freed or any(e.model == model for e in g.loaded):
                g.loaded = [e for e in g.loaded if e.model != model]
                g.used = max(0, g.used - freed)
                g.available += freed

    def request(self, model: str, t: int) -> Decision:
        d = self.decide(model, t)
        self.apply(model, t, d)
        return d

    def set_health(self, gpu: int, health: str) -> None:
        self.gpus[gpu].health = health

    def state(self) -> list[dict]:
        """Final state in the oracle's ``final_state`` layout."""
        return [
            {
                "id": g.id,
                "health": g.health,
                "memory_total_bytes": g.memory_total,
                "memory_used_bytes": g.used,
                "memory_available_bytes": g.available,
                "loaded_models": [
                    {
                        "model": e.model,
                        "vram_bytes": e.vram,
                        "last_request_t_ms": e.last_request_t,
                        "request_count": e.request_count,
                    }
                    for e in g.loaded
                ],
            }
            for g in self.gpus
        ]


def run_scenario(scenario: dict, fixes: int = 0) -> tuple[list[Decision], Router]:
    """Replay an oracle-format scenario dict; one decision per request event."""
    cfg = scenario["config"]
    router = Router(
        gpus=[
            Gpu(id=g["id"], memory_total=g["memory_total_bytes"], health=g.get("health", HEALTHY))
            for g in scenario["gpus"]
        ],
        models=[
            {"id": m["id"], "vram": m["vram_required_bytes"], "pin": m.get("pin", False)}
            for m in scenario["models"]
        ],
        policy=cfg["eviction_policy"],
        headroom=cfg["vram_headroom_bytes"],
        fixes=fixes,
    )
    decisions = []
    for ev in scenario["events"]:
        if ev["kind"] == "request":
            decisions.append(router.request(ev["model"], ev["t_ms"]))
        elif ev["kind"] == "health":
            router.set_health(ev["gpu"], ev["health"])
        elif ev["kind"] == "crash":
            router.remove_everywhere(ev["model"])
        else:
            raise ValueError(f"unknown event kind {ev['kind']!r}")
    return decisions, router
