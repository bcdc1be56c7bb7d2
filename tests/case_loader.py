"""Bug cases written as small YAML blocks (``tests/cases/bug_cases.yaml``) -> oracle scenarios.

A case states sizes the way ``concerto.toml`` does (``"16GiB"``, ``"8.2GB"``, integer bytes), so
they go through ``parse_size`` exactly as a config would; a bad size is an error that names the
file, the case, the model id and the field. The format is documented at the top of the YAML.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from concerto_lab.model.sizes import parse_size

CASES_FILE = Path(__file__).parent / "cases" / "bug_cases.yaml"


@dataclass(frozen=True)
class BugCase:
    id: str
    policy: str
    scenario: dict  # oracle format (tests/oracle/README.md section 1)
    expected: list[dict]  # one per request event
    final: dict


def load_cases(path: Path = CASES_FILE) -> list[BugCase]:
    """Every case of the file; a case listing several policies gives one BugCase per policy."""
    doc = yaml.safe_load(Path(path).read_text())
    out = []
    for block in doc["cases"]:
        policies = block["config"]["policy"]
        for policy in [policies] if isinstance(policies, str) else policies:
            out.append(case_from_block(block, policy, source=str(path)))
    return out


def case_from_block(block: dict, policy: str, source: str = "<yaml>") -> BugCase:
    where = f"{source}: case {block['id']}"

    def size(value, field: str) -> int:
        return parse_size(value, what=f"{where}: {field}")

    def ident(value, field: str) -> str:
        if not isinstance(value, str):  # YAML turns bare no/on/1.0 into bools and numbers
            raise ValueError(f"{where}: {field}: model id {value!r} must be a quoted string")
        return value

    cfg = block["config"]
    gpus = []
    for k, g in enumerate(block["gpus"]):
        if g["id"] != k:
            raise ValueError(f"{where}: gpus[{k}].id is {g['id']}, expected {k}")
        gpus.append({"id": k, "health": g.get("health", "Healthy"),
                     "memory_total_bytes": size(g["memory_total"], f"gpus[{k}].memory_total")})
    models = [
        {"id": ident(m["id"], "models[].id"), "pin": bool(m.get("pin", False)),
         "vram_required_bytes": size(m["vram_required"], f"model {m['id']!r} vram_required")}
        for m in block["models"]
    ]  # fmt: skip
    events = []
    for k, ev in enumerate(block["events"]):
        t = int(ev["t"])
        if "request" in ev:
            model = ident(ev["request"], f"events[{k}].request")
            events.append({"t_ms": t, "kind": "request", "model": model})
        elif "crash" in ev:
            model = ident(ev["crash"], f"events[{k}].crash")
            events.append({"t_ms": t, "kind": "crash", "model": model})
        elif "health" in ev:
            h = ev["health"]
            events.append({"t_ms": t, "kind": "health", "gpu": int(h["gpu"]), "health": h["state"]})
        else:
            raise ValueError(f"{where}: events[{k}] is none of request, crash, health: {ev}")
    n_requests = sum(e["kind"] == "request" for e in events)
    if len(block["expected"]) != n_requests:
        raise ValueError(
            f"{where}: {len(block['expected'])} expected decisions for {n_requests} requests"
        )
    scenario = {
        "name": f"{block['id']}_{policy}",
        "description": block.get("title", ""),
        "config": {
            "eviction_policy": policy,
            "vram_headroom_bytes": size(cfg.get("vram_headroom", "1GB"), "config.vram_headroom"),
        },
        "gpus": gpus,
        "models": models,
        "events": events,
    }
    final = block.get("final") or {}
    final = {
        "gpus": {
            int(k): {
                key: (size(v, f"final.gpus.{k}.{key}") if key in ("available", "used") else v)
                for key, v in g.items()
            }
            for k, g in (final.get("gpus") or {}).items()
        },
        "models": {str(m): dict(v) for m, v in (final.get("models") or {}).items()},
    }
    return BugCase(block["id"], policy, scenario, list(block["expected"]), final)


def expected_tuple(e: dict) -> tuple:
    """An expected entry as ``(decision, gpu, evict, reject_kind)``, like ``twins``' decisions."""
    if e["decision"] == "reject":
        return ("reject", None, (), e["reason"])
    if e["decision"] == "route":
        return ("route", e["gpu"], (), None)
    return ("load", e["gpu"], tuple(e.get("evict", ())), None)
