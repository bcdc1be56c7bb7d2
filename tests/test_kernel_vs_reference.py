"""The Numba kernel equals the pure-Python reference on thousands of seeded random scenarios:
every decision, GPU, eviction list (order and repeats), reject kind, and the final state.

Seeds are fixed, so a failure names a scenario that ``scenario_gen.scenario_for_seed`` rebuilds
exactly; ``twins.first_difference`` then says where the two implementations part.
"""

from collections import Counter

import pytest
from scenario_gen import POLICIES, scenario_for_seed, scenarios
from twins import first_difference, kernel_run, reference_run

BLOCK = 500
FIXES = (("route_healthy_copy",), ("pin_reason",), ("route_healthy_copy", "pin_reason"))


def _assert_agree(first_seed, count, fixes=(), **knobs):
    for sc in scenarios(first_seed, count, **knobs):
        diff = first_difference(sc, fixes)
        assert diff is None, f"{sc['description']} fixes={fixes}: {diff}"


@pytest.mark.parametrize("first_seed", range(0, 8 * BLOCK, BLOCK))
def test_kernel_equals_reference(first_seed):
    _assert_agree(first_seed, BLOCK)


@pytest.mark.parametrize("fixes", FIXES, ids="+".join)
def test_kernel_equals_reference_with_fixes(fixes):
    _assert_agree(100_000, 2 * BLOCK, fixes)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("whole_seconds", [True, False], ids=["whole_s", "ms"])
def test_each_policy_with_and_without_whole_seconds(policy, whole_seconds):
    # size_weighted_lru goldens only use whole seconds; ours must not depend on it, and does not
    # (both sides floor the same integer staleness).
    _assert_agree(200_000, BLOCK // 2, policy=policy, whole_seconds=whole_seconds)


@pytest.mark.parametrize("headroom", [0, 10**9])
def test_headroom_zero_and_nonzero(headroom):
    _assert_agree(300_000, BLOCK // 2, headroom=headroom)


def test_sizes_and_times_near_the_int64_ceiling():
    _assert_agree(400_000, BLOCK, huge=True)
    corners = Counter()
    for sc in scenarios(400_000, BLOCK, huge=True):
        headroom = sc["config"]["vram_headroom_bytes"]
        vram = [m["vram_required_bytes"] for m in sc["models"]]
        corners["need>int64"] += any(v + headroom > 2**63 - 1 for v in vram)
        corners["t>2**53"] += sc["events"][-1]["t_ms"] > 2**53
        corners["gpu>2**61"] += any(g["memory_total_bytes"] > 2**61 for g in sc["gpus"])
    assert min(corners.values()) > 0 and len(corners) == 3, corners


def test_fixes_change_decisions_somewhere():
    """Guard against a vacuous comparison: each opt-in fix must matter on some random inputs."""
    changed = Counter()
    for sc in scenarios(100_000, 2 * BLOCK):
        plain, _ = reference_run(sc)
        for fixes in FIXES[:2]:
            if reference_run(sc, fixes)[0] != plain:
                changed[fixes] += 1
    assert changed[("route_healthy_copy",)] >= 5, changed
    assert changed[("pin_reason",)] >= 5, changed


def test_generator_reaches_the_corners():
    """The random scenarios must contain every behaviour the comparison is meant to cover."""
    seen = Counter()
    for sc in scenarios(0, BLOCK):
        cfg, models = sc["config"], {m["id"]: m for m in sc["models"]}
        seen[cfg["eviction_policy"]] += 1
        seen["headroom0" if cfg["vram_headroom_bytes"] == 0 else "headroom>0"] += 1
        seen["gpus>=4"] += len(sc["gpus"]) >= 4
        seen["mixed_sizes"] += len({g["memory_total_bytes"] for g in sc["gpus"]}) > 1
        seen["degraded"] += any(g["health"] == "Degraded" for g in sc["gpus"])
        seen["empty_registry"] += not models
        seen["zero_byte_model"] += any(m["vram_required_bytes"] == 0 for m in models.values())
        seen["model>2**32"] += any(m["vram_required_bytes"] > 2**32 for m in models.values())
        seen["pinned_model"] += any(m["pin"] for m in models.values())
        ts = [e["t_ms"] for e in sc["events"]]
        seen["equal_t"] += len(set(ts)) < len(ts)
        seen["t>2**32"] += ts[-1] > 2**32
        seen["health_event"] += any(e["kind"] == "health" for e in sc["events"])
        seen["crash_event"] += any(e["kind"] == "crash" for e in sc["events"])
        requests = [e["model"] for e in sc["events"] if e["kind"] == "request"]
        decisions, _ = kernel_run(sc)
        for model, (decision, _, evict, kind) in zip(requests, decisions):
            seen[kind or decision] += 1
            seen["multi_evict"] += len(evict) >= 2
            seen["duplicate_evict_id"] += len(set(evict)) < len(evict)  # Q4
            seen["self_eviction"] += model in evict  # Q3
    for corner in (*POLICIES, "headroom0", "headroom>0", "gpus>=4", "mixed_sizes", "degraded",
                   "empty_registry", "zero_byte_model", "model>2**32", "pinned_model", "equal_t",
                   "t>2**32", "health_event", "crash_event", "route", "load", "unknown", "pinned",
                   "no_fit", "multi_evict", "duplicate_evict_id", "self_eviction"):  # fmt: skip
        assert seen[corner] > 0, f"generator never produced {corner!r}: {dict(seen)}"


def test_generator_is_reproducible():
    assert scenario_for_seed(7) == scenario_for_seed(7)
    assert scenario_for_seed(7) != scenario_for_seed(8)
