"""Routing invariants as property tests, checked on the kernel's decisions and state.

The kernel runs one request per call with its state carried over (``twins.KernelStepper``); the
reference runs in lockstep and must agree after every request, so its state before a request is
a faithful witness of the kernel's (the kernel's own state is only observable between calls).
Examples come from ``scenario_gen`` driven by hypothesis's randoms (seeded ones: hypothesis's
own low-entropy draws would make nearly every request an unknown id); a failure prints the
whole scenario dict. The profile ("ci": bounded, derandomized) is registered in ``conftest.py``.
"""

import copy
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scenario_gen import POLICIES, random_scenario
from twins import KernelStepper, as_tuple, kernel_run, make_router

from concerto_lab.reference import Decision

FIX_SETS = ((), ("route_healthy_copy",), ("pin_reason",), ("route_healthy_copy", "pin_reason"))
#: Each example is cheap (a few ms), so these tests take three times the profile's budget.
more = settings(max_examples=3 * settings.default.max_examples)


@st.composite
def scenario_dicts(draw, **knobs):
    rng = draw(st.randoms(use_true_random=True))
    return random_scenario(rng, max_events=60, **knobs)


# --- helpers on oracle-layout states ---------------------------------------------------------
def holds(gpu: dict, model: str) -> bool:
    return any(e["model"] == model for e in gpu["loaded_models"])


def check_accounting(state: list[dict]) -> None:
    """used == sum of resident sizes; available == total - used; 0 <= used <= total."""
    for g in state:
        resident = sum(e["vram_bytes"] for e in g["loaded_models"])
        assert g["memory_used_bytes"] == resident, g
        assert g["memory_available_bytes"] == g["memory_total_bytes"] - resident, g
        assert 0 <= g["memory_used_bytes"] <= g["memory_total_bytes"], g


def victims_on(gpu: dict, evict: tuple, policy: str, t: int) -> tuple[list[dict], list[dict]]:
    """The entries of ``gpu`` that the plan took (``evict`` names ids; copies of one id are taken
    in policy order) and the non-pinned entries it left. Which copy of an id does not change
    sizes; for LRU the oldest copies go first."""
    assert policy in POLICIES
    want = Counter(evict)
    chosen, left = [], []
    order = sorted(gpu["loaded_models"], key=lambda e: e["last_request_t_ms"])
    for e in order:
        if want[e["model"]] > 0:
            want[e["model"]] -= 1
            chosen.append(e)
        else:
            left.append(e)
    assert not +want, f"evict names {dict(+want)} not resident on GPU {gpu['id']}"
    return chosen, left


def check_decision(sc, fixes, model, t, got, before, after):
    cfg = sc["config"]
    policy, headroom = cfg["eviction_policy"], cfg["vram_headroom_bytes"]
    vram = {m["id"]: m["vram_required_bytes"] for m in sc["models"]}
    pinned = {m["id"] for m in sc["models"] if m["pin"]}
    decision, g, evict, kind = got
    usable = [x for x in before if x["health"] != "Unhealthy"]

    if model not in vram:  # unknown ids are always rejected, and change nothing
        assert got == ("reject", None, (), "unknown")
        assert after == before
        return
    need = vram[model] + headroom

    if decision == "route":
        assert evict == () and kind is None
        assert holds(before[g], model), "a route names a GPU whose list holds the model"
        assert before[g]["health"] != "Unhealthy"
        if "route_healthy_copy" not in fixes:
            first = next(x for x in before if holds(x, model))
            assert first["id"] == g, "route goes to the first GPU holding a copy (Q1)"
        hit = next(e for e in after[g]["loaded_models"] if e["model"] == model)
        old = next(e for e in before[g]["loaded_models"] if e["model"] == model)
        assert (hit["last_request_t_ms"], hit["request_count"]) == (t, old["request_count"] + 1)
        return

    if decision == "reject":
        assert g is None and evict == () and kind in ("pinned", "no_fit")
        assert after == before, "a reject changes nothing"
        for x in usable:  # a reject is honest: no usable GPU could have made room
            evictable = sum(e["vram_bytes"] for e in x["loaded_models"] if e["model"] not in pinned)
            assert x["memory_available_bytes"] + evictable < need, x
        pin_holders = [x for x in usable if any(e["model"] in pinned for e in x["loaded_models"])]
        if "pin_reason" in fixes:
            pin_holders = [
                x for x in pin_holders
                if x["memory_available_bytes"] + x["memory_used_bytes"] >= need
            ]  # fmt: skip
        assert kind == ("pinned" if pin_holders else "no_fit")
        return

    assert decision == "load" and kind is None
    assert before[g]["health"] != "Unhealthy", "no new copy on an Unhealthy GPU"
    assert not set(evict) & pinned, "pinned models are never evicted"
    new = after[g]["loaded_models"][-1]
    assert (new["model"], new["vram_bytes"], new["last_request_t_ms"], new["request_count"]) == (
        model, vram[model], t, 1,
    )  # fmt: skip
    for victim in set(evict) - {model}:  # Q5: eviction is by id, on every GPU
        assert not any(holds(x, victim) for x in after)
    if not evict:
        assert before[g]["memory_available_bytes"] >= need
        direct = [x for x in usable if x["memory_available_bytes"] >= need]
        best = min(direct, key=lambda x: (x["health"] != "Healthy", -x["memory_available_bytes"],
                                          x["id"]))  # fmt: skip
        assert best["id"] == g, "placement: Healthy, then most available, then lowest index"
        return
    assert not any(x["memory_available_bytes"] >= need for x in usable), "evicted needlessly"
    deficit = need - before[g]["memory_available_bytes"]
    chosen, left = victims_on(before[g], evict, policy, t)
    freed = sum(e["vram_bytes"] for e in chosen)
    assert freed >= deficit, "an eviction plan frees at least the deficit"
    assert freed - vram[evict[-1]] < deficit, "the plan stops as soon as the deficit is covered"
    assert all(e["model"] not in pinned for e in chosen)
    if policy == "lru":
        unpinned_left = [e for e in left if e["model"] not in pinned]
        if unpinned_left:
            newest_victim = max(e["last_request_t_ms"] for e in chosen)
            oldest_kept = min(e["last_request_t_ms"] for e in unpinned_left)
            assert newest_victim <= oldest_kept, "LRU evicts the stalest entries first"
    # A GPU tried earlier (more available, ties to lower index) could not have made room.
    for x in usable:
        if (-x["memory_available_bytes"], x["id"]) < (-before[g]["memory_available_bytes"], g):
            evictable = sum(e["vram_bytes"] for e in x["loaded_models"] if e["model"] not in pinned)
            assert x["memory_available_bytes"] + evictable < need, x


def run_lockstep(sc: dict, fixes=()) -> Counter:
    """Kernel and reference side by side; every invariant checked after every request."""
    router = make_router(sc, fixes)
    kernel = KernelStepper(sc, fixes)
    seen = Counter()
    i = 0
    for ev in sc["events"]:
        if ev["kind"] == "health":
            router.set_health(ev["gpu"], ev["health"])
            continue
        if ev["kind"] == "crash":
            router.remove_everywhere(ev["model"])
            continue
        model, t = ev["model"], ev["t_ms"]
        before = router.state()
        check_accounting(before)
        want = router.decide(model, t)
        got = kernel.step(i)
        assert got == as_tuple(want), f"request {i}: kernel == reference"
        router.apply(model, t, want)
        after = kernel.state()
        assert after == router.state(), f"request {i}: state after it"
        check_accounting(after)
        check_decision(sc, fixes, model, t, got, before, after)
        seen[got[3] or got[0]] += 1
        seen["evictions"] += len(got[2])
        i += 1
    kernel.finish()
    assert kernel.state() == router.state()
    check_accounting(kernel.state())
    return seen


@more
@given(scenario_dicts(), st.sampled_from(FIX_SETS))
def test_invariants_hold_after_every_request(sc, fixes):
    run_lockstep(sc, fixes)


@more
@given(scenario_dicts(policy="lru"))
def test_lru_invariants(sc):
    run_lockstep(sc)


@more
@given(scenario_dicts(policy="size_weighted_lru"))
def test_size_weighted_lru_invariants(sc):
    run_lockstep(sc)


@given(scenario_dicts(), st.sampled_from(FIX_SETS))
def test_decisions_are_deterministic(sc, fixes):
    """Same input, same output: twice in one call, and one request per call vs all at once."""
    first = kernel_run(sc, fixes)
    assert kernel_run(sc, fixes) == first
    stepper = KernelStepper(sc, fixes)
    stepped = [stepper.step(i) for i in range(stepper.n)]
    stepper.finish()
    assert (stepped, stepper.state()) == first


def test_lockstep_is_not_vacuous():
    """The fixed seeds the properties are checked on really load, evict and reject."""
    seen = Counter()
    for seed in range(40):
        seen += run_lockstep(random_scenario(random.Random(seed), max_events=60))
    for what in ("route", "load", "unknown", "pinned", "no_fit", "evictions"):
        assert seen[what] > 0, seen


def _wrong(sc, prefix_events, model, t, got):
    """Run ``check_decision`` on a deliberately wrong decision after ``prefix_events``."""
    router = make_router(sc)
    for ev in sc["events"][:prefix_events]:
        router.request(ev["model"], ev["t_ms"])
    before = router.state()
    bad = copy.deepcopy(router)
    bad.apply(model, t, Decision(got[0], got[1], got[2], got[3]))
    with pytest.raises(AssertionError):
        check_decision(sc, (), model, t, got, before, bad.state())


def _one_gpu(policy, sizes, events, total=24 * 10**9, health="Healthy"):
    return {
        "config": {"eviction_policy": policy, "vram_headroom_bytes": 10**9},
        "gpus": [{"id": 0, "memory_total_bytes": total, "health": health}],
        "models": [{"id": m, "vram_required_bytes": v, "pin": m.startswith("pin")}
                   for m, v in sizes.items()],  # fmt: skip
        "events": [{"t_ms": t, "kind": "request", "model": m} for t, m in events],
    }


def test_the_checks_catch_wrong_decisions():
    """The invariants are not vacuous: decisions a faulty router would make are refused."""
    gb = 10**9
    b01 = _one_gpu("lru", {"a": 5 * gb, "b": 5 * gb, "c": 5 * gb, "d": 5 * gb, "e": 8 * gb},
                   [(0, "a"), (1000, "b"), (2000, "c"), (3000, "d")])  # fmt: skip
    _wrong(b01, 4, "e", 4000, ("load", 0, ("a", "b"), None))  # over-eviction
    _wrong(b01, 4, "e", 4000, ("load", 0, ("b",), None))  # not the least recently used
    _wrong(b01, 4, "e", 4000, ("reject", None, (), "no_fit"))  # room could have been made
    _wrong(b01, 4, "zzz", 4000, ("reject", None, (), "no_fit"))  # unknown id, wrong kind
    _wrong(b01, 4, "a", 4000, ("load", 0, (), None))  # resident: must route
    pins = _one_gpu("lru", {"pin-x": 20 * gb, "y": 10 * gb}, [(0, "pin-x")])
    _wrong(pins, 1, "y", 1000, ("load", 0, ("pin-x",), None))  # a pinned victim
    _wrong(pins, 1, "y", 1000, ("reject", None, (), "no_fit"))  # should be the pin reason
    sick = _one_gpu("lru", {"a": 5 * gb}, [], health="Unhealthy")
    _wrong(sick, 0, "a", 0, ("load", 0, (), None))  # a new copy on an Unhealthy GPU
