"""Concerto's own ``concerto.toml``: the registry and the routing settings.

Only what decides routing is kept; the rest of Concerto's schema is accepted and ignored.
Every error names the file, the line and the field, because operators edit these by hand.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import warnings
from pathlib import Path

from ..model.cluster import ConfigError, ModelSpec, RoutingConfig
from ..model.dtypes import POLICY_NAMES
from ..model.sizes import SizeError, parse_size

_ROUTING_KEYS = {
    "eviction_policy", "vram_headroom", "max_healthy_temperature", "max_degraded_temperature",
    "cold_start_timeout_secs", "health_check_interval_secs", "eviction_grace_period_secs",
    "port_range_start", "port_range_end", "request_timeout_secs",
}  # fmt: skip
_MODEL_KEYS = {"id", "name", "weight_path", "vram_required", "engine", "engine_args", "pin"}


class _Lines:
    """Finds the line of a key inside the n-th ``[[table]]`` (or ``[table]``) of the file."""

    def __init__(self, text: str):
        self.lines = text.splitlines()

    def _blocks(self, header: str) -> list[int]:
        pat = re.compile(rf"^\s*\[\[?\s*{re.escape(header)}\s*\]\]?\s*(#.*)?$")
        return [i for i, line in enumerate(self.lines) if pat.match(line)]

    def of(self, header: str, key: str | None = None, n: int = 0) -> int | None:
        starts = self._blocks(header)
        if n >= len(starts):
            return None
        start = starts[n]
        if key is None:
            return start + 1
        key_pat = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for i in range(start + 1, len(self.lines)):
            if self.lines[i].lstrip().startswith("["):
                break
            if key_pat.match(self.lines[i]):
                return i + 1
        return start + 1


def load_config(path: str | Path) -> RoutingConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror or e}") from None
    return parse_config(text, source=str(path))


def parse_config(text: str, source: str = "concerto.toml") -> RoutingConfig:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    where = _Lines(text)

    def err(msg: str, header: str, key: str | None = None, n: int = 0) -> ConfigError:
        line = where.of(header, key, n)
        at = f"{source}:{line}" if line else source
        return ConfigError(f"{at}: {msg}")

    routing = doc.get("routing", {})
    if not isinstance(routing, dict):
        raise err("[routing] must be a table", "routing")
    for key in routing:
        if key not in _ROUTING_KEYS:
            hint = difflib.get_close_matches(key, _ROUTING_KEYS, n=1)
            warnings.warn(
                f"{source}:{where.of('routing', key) or '?'}: unknown key [routing] {key}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + "; it is ignored",
                stacklevel=2,
            )
    policy = routing.get("eviction_policy", "lru")
    if policy not in POLICY_NAMES:
        hint = difflib.get_close_matches(str(policy), POLICY_NAMES, n=1)
        raise err(
            f"[routing] eviction_policy: unknown policy {policy!r}; expected one of "
            f"{', '.join(POLICY_NAMES)}" + (f" (did you mean {hint[0]!r}?)" if hint else ""),
            "routing", "eviction_policy",
        )  # fmt: skip
    try:
        headroom = parse_size(routing.get("vram_headroom", "1GB"), what="[routing] vram_headroom")
    except SizeError as e:
        raise err(str(e), "routing", "vram_headroom") from None
    temps = {}
    for key, default in (("max_healthy_temperature", 75), ("max_degraded_temperature", 85)):
        value = routing.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise err(f"[routing] {key}: expected a number, got {value!r}", "routing", key)
        temps[key] = float(value)

    raw_models = doc.get("models", [])
    if not isinstance(raw_models, list):
        raise err("models must be an array of tables ([[models]])", "models")
    models, first_line = [], {}
    for n, m in enumerate(raw_models):
        mid = m.get("id")
        if not isinstance(mid, str) or not mid:
            raise err(f"[[models]] #{n + 1}: missing or empty id", "models", "id", n)
        if mid in first_line:
            raise err(
                f"[[models]] id: duplicate model id {mid!r} (first defined at line "
                f"{first_line[mid]})",
                "models", "id", n,
            )  # fmt: skip
        first_line[mid] = where.of("models", "id", n)
        if "vram_required" not in m:
            raise err(f"[[models]] {mid!r}: missing vram_required", "models", None, n)
        try:
            vram = parse_size(m["vram_required"], what=f"[[models]] {mid!r} vram_required")
        except SizeError as e:
            raise err(str(e), "models", "vram_required", n) from None
        pin = m.get("pin", False)
        if not isinstance(pin, bool):
            raise err(f"[[models]] {mid!r} pin: expected true or false, got {pin!r}", "models", "pin", n)
        for key in m:
            if key not in _MODEL_KEYS:
                warnings.warn(
                    f"{source}:{where.of('models', key, n)}: unknown key {key!r} in [[models]] "
                    f"{mid!r}; it is ignored",
                    stacklevel=2,
                )
        models.append(ModelSpec(mid, vram, pin))

    gpu_ids = []
    for n, g in enumerate(doc.get("gpus", [])):
        gid = g.get("id") if isinstance(g, dict) else None
        if isinstance(gid, bool) or not isinstance(gid, int) or gid < 0:
            raise err(f"[[gpus]] #{n + 1} id: expected a GPU index, got {gid!r}", "gpus", "id", n)
        gpu_ids.append(gid)
    if len(set(gpu_ids)) != len(gpu_ids):
        raise err(f"[[gpus]] id: duplicate GPU ids in {gpu_ids}", "gpus", "id")

    return RoutingConfig(
        models=tuple(models),
        policy=policy,
        headroom=headroom,
        gpu_ids=tuple(gpu_ids),
        max_healthy_temperature=temps["max_healthy_temperature"],
        max_degraded_temperature=temps["max_degraded_temperature"],
        source=source,
    )
