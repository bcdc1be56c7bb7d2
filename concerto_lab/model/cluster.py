"""What a replay is asked about: the routing config, the GPUs, and events during the trace.

Plain frozen dataclasses, checked once on construction; ``arrays.py`` turns them into the
structured numpy arrays the kernel reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable

from .dtypes import HEALTH_NAMES, POLICY_NAMES
from .sizes import describe_size, parse_size


class ConfigError(ValueError):
    """A config or argument a replay cannot run with; the text names the file and field."""


def _health(value: str, what: str) -> str:
    for h in HEALTH_NAMES:
        if str(value).lower() == h.lower():
            return h
    raise ConfigError(f"{what}: unknown health {value!r}; expected one of {', '.join(HEALTH_NAMES)}")


def _names(value):
    """One id or several: a lone string is one model id, never its characters."""
    return [value] if isinstance(value, str) else value


@dataclass(frozen=True)
class ModelSpec:
    id: str
    vram: int
    pin: bool = False


@dataclass(frozen=True)
class Gpu:
    """One GPU as Concerto sees it at start-up: ``available = total - used`` (foreign usage)."""

    total: int
    health: str = "Healthy"
    used: int = 0
    name: str = ""

    @classmethod
    def of(cls, value, index: int = 0) -> Gpu:
        """A ``Gpu`` from a size (``"24GB"``, bytes) or an existing ``Gpu``."""
        if isinstance(value, Gpu):
            return value
        total = parse_size(value, what=f"gpu {index} memory")
        if total <= 0:
            raise ConfigError(f"gpu {index} memory: a GPU of zero size ({value!r}) cannot hold anything")
        return cls(total=total)

    def __post_init__(self):
        object.__setattr__(self, "health", _health(self.health, "gpu health"))
        if self.used < 0 or self.used > self.total:
            raise ConfigError(f"gpu memory used ({self.used}) must lie within 0..total ({self.total})")

    @property
    def available(self) -> int:
        return self.total - self.used


@dataclass(frozen=True)
class RoutingConfig:
    """The parts of ``concerto.toml`` that decide routing."""

    models: tuple[ModelSpec, ...] = ()
    policy: str = "lru"
    headroom: int = 1_000_000_000
    gpu_ids: tuple[int, ...] = ()
    max_healthy_temperature: float = 75.0
    max_degraded_temperature: float = 85.0
    source: str = ""

    def __post_init__(self):
        where = f"{self.source}: " if self.source else ""
        if self.policy not in POLICY_NAMES:
            raise ConfigError(
                f"{where}[routing] eviction_policy: unknown policy {self.policy!r}; "
                f"expected one of {', '.join(POLICY_NAMES)}"
            )
        seen = set()
        for m in self.models:
            if m.id in seen:
                raise ConfigError(f"{where}[[models]] id: duplicate model id {m.id!r}")
            seen.add(m.id)
        if self.headroom < 0:
            raise ConfigError(f"{where}[routing] vram_headroom: must not be negative")

    @property
    def model_ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.models)

    @property
    def pins(self) -> frozenset[str]:
        return frozenset(m.id for m in self.models if m.pin)

    def vram(self, model_id: str) -> int:
        for m in self.models:
            if m.id == model_id:
                return m.vram
        raise KeyError(model_id)

    def with_(
        self,
        *,
        policy: str | None = None,
        headroom: int | str | None = None,
        pins: Iterable[str] | None = None,
        add_pins: Iterable[str] = (),
    ) -> RoutingConfig:
        """A what-if copy: another policy, headroom, or set of pinned models."""
        if policy is not None and policy not in POLICY_NAMES:
            raise ConfigError(
                f"policy: unknown policy {policy!r}; expected one of {', '.join(POLICY_NAMES)}"
            )
        pins, add_pins = _names(pins), _names(add_pins)
        new_pins = set(self.pins if pins is None else pins) | set(add_pins)
        unknown = sorted(new_pins - set(self.model_ids))
        if unknown:
            raise ConfigError(
                f"pin: {', '.join(map(repr, unknown))} not in the model registry"
                + (f" of {self.source}" if self.source else "")
            )
        return replace(
            self,
            policy=self.policy if policy is None else policy,
            headroom=self.headroom if headroom is None else parse_size(headroom, what="headroom"),
            models=tuple(replace(m, pin=m.id in new_pins) for m in self.models),
        )

    def warnings(self, gpus: Iterable[Gpu]) -> list[str]:
        """Legal settings that make a replay pointless, said once, up front."""
        gpus = list(gpus)
        out = []
        if not gpus:
            return ["no GPUs: every request will be rejected"]
        biggest = max(g.available for g in gpus)
        if self.headroom >= biggest:
            out.append(
                f"headroom {describe_size(self.headroom)} is not below the largest GPU's free memory "
                f"{describe_size(biggest)}: every load will be rejected"
            )
        for m in self.models:
            if m.vram + self.headroom > biggest:
                out.append(
                    f"model {m.id!r} needs {describe_size(m.vram)} + headroom, more than any GPU "
                    f"offers ({describe_size(biggest)}): it will always be rejected"
                )
        return out


@dataclass(frozen=True)
class HealthChange:
    """GPU ``gpu`` turns ``health`` at ``t_ms`` (before requests of that millisecond)."""

    t_ms: int
    gpu: int
    health: str
    pos: int | None = None  # explicit position among requests, when the source fixes it

    def __post_init__(self):
        object.__setattr__(self, "health", _health(self.health, "health event"))


@dataclass(frozen=True)
class Crash:
    """The backend of ``model`` died at ``t_ms``: every copy goes, its memory comes back."""

    t_ms: int
    model: str
    pos: int | None = None


@dataclass(frozen=True)
class Restart:
    """Concerto restarted at ``t_ms``: no model loaded, GPUs as in this start-up snapshot."""

    t_ms: int
    gpus: tuple[Gpu, ...] = field(default_factory=tuple)
    pos: int | None = None


Event = HealthChange | Crash | Restart
