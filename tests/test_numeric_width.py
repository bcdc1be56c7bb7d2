"""Bytes and times are int64 end to end: boundary tests a 32-bit or float64 path would fail.

Sizes above 2**32 and up to the 4 EiB limit, sizes that differ only below float64 precision,
epoch-ms times beyond 2**31, 2**32 and 2**53, size_weighted_lru scores beyond 2**53 and 2**63,
and request counts beyond int32. Each runs through the kernel and the reference, which must agree.
"""

import numpy as np
import pytest
from twins import KernelStepper, kernel_run, make_router, reference_run

from concerto_lab.io.scenario import scenario_from_dict
from concerto_lab.model.sizes import MAX_SIZE, parse_size
from concerto_lab.model.trace import Trace
from concerto_lab.replay import replay

LOAD = ("load", 0, (), None)


def one_gpu(total, models, events, policy="lru", headroom=0, health="Healthy"):
    return {
        "config": {"eviction_policy": policy, "vram_headroom_bytes": headroom},
        "gpus": [{"id": 0, "memory_total_bytes": total, "health": health}],
        "models": [{"id": m, "vram_required_bytes": v, "pin": False} for m, v in models.items()],
        "events": [{"t_ms": t, "kind": "request", "model": m} for t, m in events],
    }


def both(sc):
    """Kernel decisions and state, after checking the reference gives the same."""
    got = kernel_run(sc)
    assert reference_run(sc) == got
    return got


# --- sizes --------------------------------------------------------------------------------------
def test_sizes_above_2_32_are_exact():
    """Sizes just over 2**32 with a 1-byte margin: a 32-bit or float32 path gets these wrong."""
    total = 3 * 2**32 + 7
    sc = one_gpu(total, {"a": 2**32 + 3, "b": 2**32 + 4, "c": 2**32 + 1},
                 [(0, "a"), (1, "b"), (2, "c")])  # fmt: skip
    decisions, state = both(sc)
    # a + b leave 2**32 exactly; c needs 2**32 + 1: one byte short, so the LRU a goes.
    assert decisions == [LOAD, LOAD, ("load", 0, ("a",), None)]
    assert state[0]["memory_used_bytes"] == 2 * 2**32 + 5
    assert state[0]["memory_available_bytes"] == 2**32 + 2


def test_sizes_that_differ_below_float64_precision():
    """2**60 + 1 and 2**60 + 2 are the same float64; the fit test must still tell them apart."""
    assert float(2**60 + 1) == float(2**60 + 2)
    sc = one_gpu(2**60 + 1, {"fits": 2**60 + 1, "one_byte_over": 2**60 + 2},
                 [(0, "one_byte_over"), (1, "fits")])  # fmt: skip
    decisions, state = both(sc)
    assert decisions == [("reject", None, (), "no_fit"), LOAD]
    assert state[0]["memory_available_bytes"] == 0
    assert state[0]["memory_used_bytes"] == 2**60 + 1


def test_sizes_at_the_4_eib_limit():
    """GPU and models at 2**62 (the largest accepted size), headroom included in the sum."""
    assert parse_size("4EiB") == MAX_SIZE == 2**62
    sc = one_gpu(MAX_SIZE, {"big": MAX_SIZE - 2**40, "tiny": 1, "max": MAX_SIZE},
                 [(0, "big"), (1, "big"), (2, "tiny"), (3, "max")], headroom=2**40)  # fmt: skip
    decisions, state = both(sc)
    assert decisions == [
        LOAD,  # need == total exactly
        ("route", 0, (), None),
        ("load", 0, ("big",), None),  # 1 + 2**40 > 0 available: big goes
        ("reject", None, (), "no_fit"),  # 2**62 + 2**40 > 2**62, even on an emptied GPU
    ]
    assert state[0]["memory_used_bytes"] == 1


def test_need_of_two_4_eib_sizes_does_not_wrap():
    """vram + headroom = 2**63 is one past int64: it must reject, not wrap negative and fit."""
    sc = one_gpu(MAX_SIZE, {"max": MAX_SIZE, "zero": 0}, [(0, "max"), (1, "zero")],
                 headroom=MAX_SIZE)  # fmt: skip
    decisions, _ = both(sc)
    assert decisions == [("reject", None, (), "no_fit"), LOAD]  # 0 + 2**62 fits exactly


def _big_replay():
    """Two loads whose exact sum, 2**61 + 2**60 + 4, is no float64 (spacing 512 up there)."""
    sc = one_gpu(MAX_SIZE, {"a": 2**61 + 1, "b": 2**60 + 3}, [(0, "a"), (1, "b")])
    s = scenario_from_dict(sc)
    return replay(s.trace, s.config, s.gpus, warn=False)


def test_large_sizes_survive_the_result_tables():
    r = _big_replay()
    assert r.summary()["bytes_loaded"] == 2**61 + 2**60 + 4
    assert r.final_state()[0]["memory_used_bytes"] == 2**61 + 2**60 + 4
    assert r.final_state()[0]["memory_available_bytes"] == 2**60 - 4
    assert r.per_model()["vram_bytes"].to_list() == [2**61 + 1, 2**60 + 3]
    assert [line["decision"] for line in r.oracle_lines()] == ["load", "load"]


def test_per_gpu_bytes_loaded_is_exact():
    assert _big_replay().per_gpu()["bytes_loaded"].to_list() == [2**61 + 2**60 + 4]


# --- times --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "t0", [2**31 - 2, 2**32 - 2, 1_741_064_767_000, 2**53 - 2, 2**53 + 2, 2**62]
)
def test_lru_orders_by_exact_milliseconds_at_any_epoch(t0):
    """Around 2**31 and 2**32 (32-bit overflow) and 2**53 (float64 spacing 2 ms above it: at
    2**53 + 2, y's 2**53 + 3 and x's 2**53 + 4 are the same float64, and a tie goes to x)."""
    gb = 10**9
    sc = one_gpu(20 * gb, {"x": 10 * gb, "y": 10 * gb, "z": 10 * gb},
                 [(t0, "x"), (t0 + 1, "y"), (t0 + 2, "x"), (t0 + 3, "z"), (t0 + 4, "y")])
    # x (list first) is refreshed at t0+2, so y (t0+1) is one ms staler: y goes, then x.
    decisions, state = both(sc)  # fmt: skip
    assert decisions[3] == ("load", 0, ("y",), None)
    assert decisions[4] == ("load", 0, ("x",), None)
    assert [e["last_request_t_ms"] for e in state[0]["loaded_models"]] == [t0 + 3, t0 + 4]


def test_times_keep_every_bit_through_the_trace_and_results():
    times = [2**31 + 1, 2**32 + 1, 2**53 + 1, 2**62 + 1]
    trace = Trace.from_columns(times, ["m"] * 4)
    assert trace.t_ms.dtype == np.int64 and trace.t_ms.tolist() == times
    sc = one_gpu(10, {"m": 1}, [(t, "m") for t in times])
    s = scenario_from_dict(sc)
    r = replay(s.trace, s.config, s.gpus, warn=False)
    assert [line["t_ms"] for line in r.oracle_lines()] == times
    assert r.final_state()[0]["loaded_models"][0]["last_request_t_ms"] == times[-1]
    assert r.evict_req.dtype == np.int64 and r.final_entries["last_t"].dtype == np.int64


def test_decisions_table_keeps_int64_times():
    times = [2**31 + 1, 2**32 + 1, 2**53 + 1]
    s = scenario_from_dict(one_gpu(10, {"m": 1}, [(t, "m") for t in times]))
    r = replay(s.trace, s.config, s.gpus, warn=False)
    assert r.decisions["t_ms"].to_list() == times


# --- size_weighted_lru scores -------------------------------------------------------------------
def test_swlru_scores_are_float64_products_beyond_2_53():
    """Concerto scores ``staleness as f64 * vram as f64``: 2**54 + 1 bytes becomes 2**54, so two
    copies with equal staleness tie and list order decides. Exact integers would evict the
    later, one-byte-larger copy."""
    assert float(2**54 + 1) == float(2**54)
    # Both copies fit (2**55 + 1 bytes); 2**53 more does not, and either copy alone makes room.
    sc = one_gpu(2**55 + 2**52, {"early": 2**54, "late": 2**54 + 1, "next": 2**53},
                 [(0, "early"), (500, "late"), (1500, "next")], policy="size_weighted_lru")
    decisions, _ = both(sc)  # fmt: skip
    assert decisions[2] == ("load", 0, ("early",), None)


def test_swlru_scores_beyond_int64_do_not_wrap():
    """Staleness 2**33 s times 2**40 bytes is 2**73: in int64 it would wrap to 0 and lose."""
    t_old = 0
    t_now = 2**33 * 1000 + 500
    sc = one_gpu(2**42, {"old": 2**40, "big": 2**41, "new": 2**41},
                 [(t_old, "old"), (t_now - 1000, "big"), (t_now, "new")],
                 policy="size_weighted_lru")  # fmt: skip
    decisions, _ = both(sc)
    # old: 2**33 s * 2**40 = 2**73; big: 1 s * 2**41. One victim is enough; old is worth more.
    assert decisions[2] == ("load", 0, ("old",), None)


@pytest.mark.parametrize("whole_seconds", [True, False])
def test_swlru_staleness_floors_whole_seconds_at_epoch_scale(whole_seconds):
    """Staleness is floor(ms / 1000) with a floor of 1, also at present-day epoch ms."""
    t0 = 1_741_064_767_000 + (0 if whole_seconds else 999)
    gb = 10**9
    # a (10 GB) idle 2.999 s -> 2 s -> 20e9; b (15 GB) idle 1.5 s -> 1 s -> 15e9: a goes.
    sc = one_gpu(26 * gb, {"a": 10 * gb, "b": 15 * gb, "c": 10 * gb},
                 [(t0, "a"), (t0 + 1499, "b"), (t0 + 2999, "c")], policy="size_weighted_lru")
    decisions, _ = both(sc)  # fmt: skip
    assert decisions[2] == ("load", 0, ("a",), None)


# --- counts -------------------------------------------------------------------------------------
def test_request_counts_beyond_int32():
    """Counts are int64: seed two copies' counts across 2**31 and 2**32, then route and evict
    under LFU. int32 counts would wrap 2**31 - 1 + 1 negative and evict the busiest copy."""
    gb = 10**9
    sc = one_gpu(25 * gb, {"hot": 10 * gb, "warm": 10 * gb, "new": 10 * gb},
                 [(0, "hot"), (1, "warm"), (2, "hot"), (3, "new")], policy="lfu")  # fmt: skip
    kernel = KernelStepper(sc)
    router = make_router(sc)
    for i in (0, 1):
        kernel.step(i)
        router.request(sc["events"][i]["model"], sc["events"][i]["t_ms"])
    seeded = {"hot": 2**31 - 1, "warm": 2**32 + 5}
    n = int(kernel.counters[0])
    for row in range(n):
        kernel.entries[row]["count"] = seeded[kernel.names[kernel.entries[row]["model"]]]
    for e in router.gpus[0].loaded:
        e.request_count = seeded[e.model]
    assert kernel.state() == router.state()

    assert kernel.step(2) == ("route", 0, (), None)
    router.request("hot", 2)
    counts = {e["model"]: e["request_count"] for e in kernel.state()[0]["loaded_models"]}
    assert counts == {"hot": 2**31, "warm": 2**32 + 5}
    # LFU: hot (2**31) is colder than warm (2**32 + 5).
    assert kernel.step(3) == ("load", 0, ("hot",), None)
    assert router.decide("new", 3).evict == ("hot",)
