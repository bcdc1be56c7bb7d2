"""VRAM residency rebuilt from a replay equals the replay's own memory state, at every point.

The end state is checked on every oracle scenario; the state before request k is checked
against a replay of the first k requests on the scenarios with crashes, duplicate copies,
self-eviction and duplicate ids in evict lists (quirks Q1-Q6).
"""

from collections import Counter

import numpy as np
import polars as pl
import pytest
from conftest import ORACLE, oracle_names

from concerto_lab.analysis.occupancy import (
    FOREIGN_NAME,
    occupancy_table,
    residency,
    used_at,
)
from concerto_lab.io.scenario import load_scenario
from concerto_lab.model.cluster import Crash, Gpu, HealthChange, Restart
from concerto_lab.model.trace import Trace
from concerto_lab.replay import replay

QUIRKY = [
    "crash_basic_reload",
    "evict_list_duplicate_ids",
    "unhealthy_duplicate_copies",
    "pinned_duplicate_explosion",
    "rand_m_lru_s11",
]


def _replay(name, k=None):
    sc = load_scenario(ORACLE / f"{name}.json")
    trace, events = sc.trace, sc.events
    if k is not None:
        trace = Trace(trace.t_ms[:k], trace.model[:k], trace.names)
        events = tuple(e for e in events if e.pos < k)
    return replay(trace, sc.config, sc.gpus, events=events, warn=False)


def _copies(iv: pl.DataFrame) -> Counter:
    iv = iv.filter(pl.col("model") != FOREIGN_NAME)
    return Counter(zip(iv["gpu"].to_list(), iv["model"].cast(pl.String).to_list()))


def _final_copies(result) -> Counter:
    return Counter((int(e["gpu"]), result.names[int(e["model"])]) for e in result.final_entries)


@pytest.mark.parametrize("name", oracle_names())
def test_end_state_equals_replay_counters(name):
    result = _replay(name)
    iv = residency(result)
    n = len(result)
    foreign = np.array([g.used for g in result.gpus])
    assert np.array_equal(used_at(iv, n, len(result.gpus), foreign=False),
                          result.final_gpus["used"] - foreign)  # fmt: skip
    assert _copies(iv.filter(pl.col("end") == "resident")) == _final_copies(result)
    # Every load opens exactly one interval.
    assert iv.filter(pl.col("model") != FOREIGN_NAME).height == result.summary()["loads"]


def test_the_quirky_scenarios_exist():
    names = set(oracle_names())
    assert set(QUIRKY) <= names
    sc = load_scenario(ORACLE / "crash_basic_reload.json")
    assert any(isinstance(e, Crash) for e in sc.events)


@pytest.mark.parametrize("name", QUIRKY)
def test_state_before_every_request_matches_a_prefix_replay(name):
    full = _replay(name)
    iv = residency(full)
    n = len(full)
    ks = range(n + 1) if n <= 60 else sorted({0, 1, 2, n // 3, n // 2, n - 1, n, *range(5, n, 97)})
    for k in ks:
        prefix = _replay(name, k)
        live = iv.filter((pl.col("start_i") < k) & (pl.col("end_i") >= k))
        assert _copies(live) == _final_copies(prefix), f"{name} before request {k}"
        assert np.array_equal(used_at(iv, k, len(full.gpus)), prefix.final_gpus["used"])


def test_duplicate_evict_ids_close_every_copy_once():
    result = _replay("evict_list_duplicate_ids")
    iv = residency(result)
    evicted = iv.filter(pl.col("end") == "evicted")
    # Each evicted copy ends at the request whose plan named it; no copy ends twice.
    ends = Counter(zip(evicted["end_i"].to_list(), evicted["model"].cast(pl.String).to_list()))
    plans = Counter(zip(result.evict_req.tolist(), [result.names[m] for m in result.evict_model]))
    for key, copies in ends.items():
        assert key in plans
    # A Q4 duplicate id names one copy per mention; Q5 may remove more copies than mentions.
    assert sum(ends.values()) >= len(set(plans))


def test_restart_and_foreign_usage():
    """A restart empties the node and resets foreign usage to its snapshot."""
    gib = 2**30
    trace = Trace.from_columns([0, 10, 20, 30, 40, 50], ["a", "b", "a", "c", "b", "a"])
    from concerto_lab.model.cluster import ModelSpec, RoutingConfig

    config = RoutingConfig(models=(ModelSpec("a", 10 * gib), ModelSpec("b", 6 * gib),
                                   ModelSpec("c", 8 * gib)), headroom=0)  # fmt: skip
    gpus = (Gpu(24 * gib, used=gib), Gpu(24 * gib))
    events = [
        Restart(25, (Gpu(24 * gib, used=3 * gib), Gpu(24 * gib, used=2 * gib))),
        Crash(45, "b"),
        HealthChange(45, 1, "Degraded"),
    ]
    result = replay(trace, config, gpus, events=events, warn=False)
    iv = residency(result)
    assert np.array_equal(used_at(iv, len(trace), 2), result.final_gpus["used"])
    foreign = iv.filter(pl.col("model") == FOREIGN_NAME).sort("start_ms", "gpu")
    assert foreign.select("gpu", "vram_bytes", "start_ms", "end_ms", "end").rows() == [
        (0, gib, 0, 25, "restart"),
        (0, 3 * gib, 25, 50, "resident"),
        (1, 2 * gib, 25, 50, "resident"),
    ]
    models = iv.filter(pl.col("model") != FOREIGN_NAME).sort("start_i")
    assert models.select("model", "start_i", "end_i", "end").rows() == [
        ("a", 0, 3, "restart"),
        ("b", 1, 3, "restart"),
        ("c", 3, 6, "resident"),
        ("b", 4, 5, "crash"),
        ("a", 5, 6, "resident"),
    ]


def test_bucket_table_keeps_byte_time():
    result = _replay("rand_m_lru_s11")
    iv = residency(result)
    start = int(iv["start_ms"].min())
    end = int(iv["end_ms"].max())
    width = max(1, (end - start) // 37 + 1)
    tab = occupancy_table(result, start, width, 40, intervals=iv)
    total = (tab["bytes"] * width).sum()
    dur = (iv["end_ms"] - iv["start_ms"]).cast(pl.Float64)
    want = float((dur * iv["vram_bytes"].cast(pl.Float64)).sum())
    assert total == pytest.approx(want, rel=1e-12)
    # Per GPU, the mean never exceeds what the GPU holds.
    per = tab.group_by("bucket", "gpu").agg(pl.col("bytes").sum())
    caps = np.array([g.total for g in result.gpus])
    assert (per["bytes"].to_numpy() <= caps[per["gpu"].to_numpy()] + 1e-6).all()
