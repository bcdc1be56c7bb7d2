"""The settings a sweep runs: a cartesian grid of what-if values, from Python or ``grid.toml``.

Five dimensions, each a list of labelled choices: ``policy``, ``headroom``, ``pins`` (exact pin
sets), ``gpus`` (GPU layouts) and ``scenarios`` (named lists of events during the trace). A
dimension left out keeps the config's value (policy, headroom, pins), the layout given to
``sweep`` (gpus), or no events (scenarios). Labels become the setting columns of the result, so
every choice has a short name; unnamed lists get one from their values.

Grid file (TOML)::

    policy   = ["lru", "lfu", "size_weighted_lru"]
    headroom = ["0", "512MiB", "1GiB", "2GiB"]          # sizes as concerto.toml writes them
    gpus     = [["24GiB", "24GiB"], ["24GiB", "24GiB", "24GiB"]]   # or a [gpus] table of names
    pins     = [[], ["llama-3.1-8b-instruct"]]          # or a [pins] table of names

    [scenarios]                                         # named event lists; [] = no events
    healthy = []
    gpu1-down-half-day = [
      { after = "3d", gpu = 1, health = "Unhealthy" },  # `after` counts from the first request
      { after = "3d12h", gpu = 1, health = "Healthy" },
    ]
    gpu0-degraded = [{ at = 2024-12-03T12:00:00Z, gpu = 0, health = "Degraded" }]

An event's time is exactly one of ``t_ms`` (epoch milliseconds), ``at`` (a TOML date-time or an
ISO 8601 string; naive times are UTC) or ``after`` (a duration such as ``"36h"``, ``"2d 6h"``,
``"90m"``, ``"500ms"`` from the first request of the trace, so one grid fits any log). Every error
names the file and the field (``grid.toml: scenarios.gpu0-degraded[0].health: ...``).
"""

from __future__ import annotations

import difflib
import itertools
import re
import tomllib
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..model.cluster import ConfigError, Crash, Gpu, HealthChange, Restart
from ..model.dtypes import HEALTH_NAMES, POLICY_NAMES
from ..model.sizes import SizeError, parse_size

DIMENSIONS = ("policy", "headroom", "pins", "gpus", "scenarios")
_EVENT_KEYS = {"t_ms", "at", "after", "gpu", "health"}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|d|h|m|s)", re.IGNORECASE)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class GridError(ConfigError):
    """A grid value a sweep cannot run with; the text names the file (if any) and the field."""


@dataclass(frozen=True)
class Choice:
    """One value of one dimension, with the label it gets in the result table."""

    name: str
    value: Any  # None: keep the config's (or sweep's) value


@dataclass(frozen=True)
class After:
    """A health change ``offset_ms`` after the first request; fixed once the trace is known."""

    offset_ms: int
    gpu: int
    health: str

    def at(self, first_ms: int) -> HealthChange:
        return HealthChange(first_ms + self.offset_ms, self.gpu, self.health)


@dataclass(frozen=True)
class Setting:
    """One point of the grid: a choice per dimension."""

    policy: Choice
    headroom: Choice
    pins: Choice
    gpus: Choice
    scenario: Choice


class Grid:
    """A cartesian grid of settings.

    ``Grid(policy=["lru", "lfu"], headroom=["0", "2GB"], pins={"none": [], "a": ["a"]},
    gpus=[["24GB"] * 2, ["24GB"] * 3], scenarios={"calm": [], "gpu0-down": [HealthChange(...)]})``.
    Lists get labels from their values; mappings give their own. ``source`` names the grid file
    in error messages.
    """

    def __init__(self, policy=None, headroom=None, pins=None, gpus=None, scenarios=None, *,
                 source: str = ""):  # fmt: skip
        self.source = source
        self.policy = _dimension(policy, "policy", source, _policy)
        self.headroom = _dimension(headroom, "headroom", source, _headroom)
        self.pins = _dimension(pins, "pins", source, _pins, _label_pins)
        self.gpus = _dimension(gpus, "gpus", source, _layout, _label_layout)
        self.scenarios = _dimension(scenarios, "scenarios", source, _events, None, "none", ())

    @classmethod
    def of(cls, grid: Grid | Mapping | str | Path) -> Grid:
        """A ``Grid`` from a ``Grid``, a dict of lists (keys as ``DIMENSIONS``) or a file path."""
        if isinstance(grid, Grid):
            return grid
        if isinstance(grid, (str, Path)):
            return load_grid(grid)
        if isinstance(grid, Mapping):
            return cls.from_dict(grid)
        raise TypeError(f"grid: expected a Grid, a dict of lists or a grid.toml path, got {grid!r}")

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "") -> Grid:
        where = f"{source}: " if source else ""
        data = dict(data)
        if "scenario" in data and "scenarios" not in data:
            data["scenarios"] = data.pop("scenario")
        for key in data:
            if key not in DIMENSIONS:
                close = difflib.get_close_matches(str(key), DIMENSIONS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise GridError(
                    f"{where}{key}: unknown grid key{hint}; expected {', '.join(DIMENSIONS)}"
                )
        return cls(**data, source=source)

    def __len__(self) -> int:
        return (len(self.policy) * len(self.headroom) * len(self.pins) * len(self.gpus)
                * len(self.scenarios))  # fmt: skip

    def settings(self) -> list[Setting]:
        """Every combination; the last dimension (scenarios) varies fastest."""
        dims = (self.policy, self.headroom, self.pins, self.gpus, self.scenarios)
        return [Setting(*combo) for combo in itertools.product(*dims)]

    def __repr__(self) -> str:
        dims = ", ".join(
            f"{d}={[c.name for c in getattr(self, d)]}" for d in DIMENSIONS
            if getattr(self, d)[0].value is not None or len(getattr(self, d)) > 1
        )
        return f"Grid({len(self)} settings: {dims})"


def load_grid(path: str | Path) -> Grid:
    """Read a ``grid.toml`` (format in this module's docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise GridError(f"{path}: cannot read grid: {e.strerror or e}") from None
    return parse_grid(text, source=str(path))


def parse_grid(text: str, source: str = "grid.toml") -> Grid:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise GridError(f"{source}: invalid TOML: {e}") from None
    if "scenario" in data and "scenarios" not in data:
        data["scenarios"] = data.pop("scenario")
    return Grid.from_dict(data, source=source)


# --- one dimension ---------------------------------------------------------------------------------
def _dimension(values, dim, source, parse, label=None, default_name="config", default=None):
    where = f"{source}: " if source else ""
    if values is None:
        return (Choice(default_name, default),)
    if isinstance(values, (str, bytes)) or not isinstance(values, (Mapping, Iterable)):
        if dim in ("policy", "headroom"):
            values = [values]  # a single value is a one-element dimension
        else:
            raise GridError(f"{where}{dim}: expected a list or a table of named values, got {values!r}")
    if isinstance(values, Mapping):
        items = [(str(k), v, f"{dim}.{k}") for k, v in values.items()]
    else:
        values = list(values)
        if dim == "scenarios":
            raise GridError(f"{where}{dim}: scenarios need names: use a table (name = [events])")
        items = [(None, v, f"{dim}[{i}]") for i, v in enumerate(values)]
    if not items:
        raise GridError(f"{where}{dim}: empty; leave the key out to keep the default")
    out, seen = [], set()
    for name, raw, field in items:
        value = parse(raw, f"{where}{field}")
        if name is None:
            name = label(raw) if label else _label(raw)
        if name in seen:
            raise GridError(f"{where}{field}: duplicate {dim} label {name!r}; name them in a table")
        seen.add(name)
        out.append(Choice(name, value))
    return tuple(out)


def _label(raw) -> str:
    return str(raw)


def _policy(raw, what):
    if raw not in POLICY_NAMES:
        raise GridError(f"{what}: unknown policy {raw!r}; expected one of {', '.join(POLICY_NAMES)}")
    return raw


def _headroom(raw, what):
    try:
        return parse_size(raw, what=what)
    except SizeError as e:
        raise GridError(str(e)) from None


def _pins(raw, what):
    if isinstance(raw, str) or not isinstance(raw, Iterable):
        raise GridError(f"{what}: a pin set is a list of model ids, got {raw!r}")
    ids = list(raw)
    for k, m in enumerate(ids):
        if not isinstance(m, str):
            raise GridError(f"{what}[{k}]: model id must be a string, got {m!r}")
    return frozenset(ids)


def _label_pins(raw) -> str:
    return "+".join(sorted(raw)) or "none"


def _layout(raw, what):
    if isinstance(raw, (str, int)) or not isinstance(raw, Iterable):
        raise GridError(f"{what}: a GPU layout is a list of sizes (one per GPU), got {raw!r}")
    raw = list(raw)
    if not raw:
        raise GridError(f"{what}: a GPU layout needs at least one GPU")
    out = []
    for k, g in enumerate(raw):
        try:
            out.append(Gpu.of(g, k))
        except (SizeError, ConfigError) as e:
            raise GridError(f"{what}[{k}]: {e}") from None
    return tuple(out)


def _label_layout(raw) -> str:
    texts = [str(g.total) if isinstance(g, Gpu) else str(g) for g in raw]
    if len(set(texts)) == 1:
        return f"{len(texts)}x{texts[0]}"
    return "+".join(texts)


def _events(raw, what):
    if isinstance(raw, (str, Mapping)) or not isinstance(raw, Iterable):
        raise GridError(f"{what}: a scenario is a list of events, got {raw!r}")
    return tuple(_event(e, f"{what}[{k}]") for k, e in enumerate(raw))


def _event(raw, what):
    if isinstance(raw, (HealthChange, Crash, Restart, After)):
        return raw
    if not isinstance(raw, Mapping):
        raise GridError(f"{what}: expected an event table {{ after = ..., gpu = ..., health = ... }}")
    for key in raw:
        if key not in _EVENT_KEYS:
            close = difflib.get_close_matches(str(key), sorted(_EVENT_KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise GridError(f"{what}.{key}: unknown event field{hint}; expected t_ms, at or "
                            "after, gpu and health")  # fmt: skip
    for key in ("gpu", "health"):
        if key not in raw:
            raise GridError(f"{what}.{key}: missing (a health event needs gpu and health)")
    gpu = raw["gpu"]
    if isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < 0:
        raise GridError(f"{what}.gpu: expected a GPU index (0, 1, ...), got {gpu!r}")
    health = raw["health"]
    match = [h for h in HEALTH_NAMES if str(health).lower() == h.lower()]
    if not match:
        raise GridError(f"{what}.health: unknown health {health!r}; expected one of "
                        f"{', '.join(HEALTH_NAMES)}")  # fmt: skip
    times = [k for k in ("t_ms", "at", "after") if k in raw]
    if len(times) != 1:
        raise GridError(f"{what}: give exactly one of t_ms, at or after (got {times or 'none'})")
    key = times[0]
    if key == "after":
        return After(_duration_ms(raw["after"], f"{what}.after"), gpu, match[0])
    if key == "t_ms":
        t = raw["t_ms"]
        if isinstance(t, bool) or not isinstance(t, int):
            raise GridError(f"{what}.t_ms: expected integer epoch milliseconds, got {t!r}")
    else:
        t = _time_ms(raw["at"], f"{what}.at")
    return HealthChange(t, gpu, match[0])


def _time_ms(value, what) -> int:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise GridError(f"{what}: cannot read time {value!r} (use an ISO 8601 date-time)") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise GridError(f"{what}: expected a date-time, got {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return (value - _EPOCH) // timedelta(milliseconds=1)  # exact, no float rounding


def _duration_ms(value, what) -> int:
    """``"2d 6h"``, ``"90m"``, ``"1.5h"``, ``"500ms"`` or integer milliseconds."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        parts = _DURATION.findall(value)
        if parts and _DURATION.sub("", value).strip() == "":
            return int(round(sum(float(x) * _UNIT_MS[u.lower()] for x, u in parts)))
    raise GridError(f"{what}: cannot read duration {value!r} (e.g. \"36h\", \"2d 6h\", \"90m\", "
                    "\"500ms\", or integer milliseconds)")  # fmt: skip
