"""The tuning panel driven from code: what it shows equals a direct replay with its settings."""

import numpy as np
import polars as pl
import pytest

from concerto_lab.model.cluster import Gpu, HealthChange
from concerto_lab.present import charts as C
from concerto_lab.present.panel import HEADROOM_STEP, TuningPanel, gb_gib, size_text
from concerto_lab.replay import replay

GiB = 2**30


@pytest.fixture(scope="module")
def demo():
    from concerto_lab.demo import load_demo

    return load_demo()


@pytest.fixture
def panel(demo):
    return TuningPanel(*demo)


def _direct(demo, **kw):
    trace, config, gpus = demo
    return replay(trace, config, kw.pop("gpus", gpus), warn=False, **kw)


def _assert_shows(panel, direct, baseline):
    s = direct.summary()
    assert panel.summary == s
    assert panel.delta == {k: s[k] - baseline.summary()[k] for k in panel.delta}
    table = dict(zip(panel.summary_table["metric"], panel.summary_table["now"]))
    assert table["cold starts"] == s["loads"] and table["routed (hits)"] == s["routed"]
    assert f"<b>{s['loads']:,}</b>" in panel.summary_html.value
    # Chart data equals the charts of the direct replay.
    assert panel.chart_data["decisions"].equals(C.decisions_data(direct))
    assert panel.chart_data["occupancy"].equals(C.occupancy_data(direct))
    assert panel.chart_data["evictions"].equals(C.evictions_matrix(direct))
    assert panel.chart_data["churn"].equals(C.churn_data(direct))
    cmp = panel.chart_data["compare"]
    assert dict(zip(cmp.filter(pl.col("replay") == "now")["metric"],
                    cmp.filter(pl.col("replay") == "now")["value"])) == {
        k: s[k] for k in C.COMPARE_METRICS
    }  # fmt: skip
    assert np.array_equal(panel.result.kind, direct.kind)
    assert np.array_equal(panel.result.evict_model, direct.evict_model)


def test_starts_at_the_config(panel, demo):
    direct = _direct(demo)
    _assert_shows(panel, direct, direct)
    assert all(v == 0 for v in panel.delta.values())
    assert panel.headroom.value == demo[1].headroom
    assert panel.gpu_sizes.value == "24GiB, 24GiB"
    assert "1.00 GB = 0.93 GiB" in panel.headroom_label.value
    # The first chart tab is drawn (SVG), the others wait until shown.
    assert panel.tabs.children[0].outputs[0]["data"]["image/svg+xml"].startswith("<svg")
    assert not panel.tabs.children[1].outputs
    panel.tabs.selected_index = 1
    assert "GiB resident" in panel.tabs.children[1].outputs[0]["data"]["image/svg+xml"]


def test_every_knob_replays(panel, demo):
    trace, config, _ = demo
    base = _direct(demo)

    panel.headroom.value = config.headroom + HEADROOM_STEP
    h = config.headroom + HEADROOM_STEP
    _assert_shows(panel, _direct(demo, headroom=h), base)
    assert panel.summary["loads"] != base.summary()["loads"]
    assert gb_gib(h) in panel.summary_html.value

    panel.policy.value = "size_weighted_lru"
    _assert_shows(panel, _direct(demo, headroom=h, policy="size_weighted_lru"), base)

    top = base.per_model()["model"][:2].to_list()
    panel.pins.value = tuple(top)
    want = _direct(demo, headroom=h, policy="size_weighted_lru", pins=top)
    _assert_shows(panel, want, base)
    assert panel.summary["pins"] == sorted(top)

    panel.gpu_count.value = 3
    assert panel.gpu_sizes.value == "24GiB, 24GiB, 24GiB"
    kw = dict(headroom=h, policy="size_weighted_lru", pins=top)
    _assert_shows(panel, _direct(demo, gpus=("24GiB",) * 3, **kw), base)

    panel.gpu_sizes.value = "24GiB, 48GiB, 16GB"
    _assert_shows(panel, _direct(demo, gpus=("24GiB", "48GiB", "16GB"), **kw), base)

    mid, late = int(trace.t_ms[len(trace) // 2]), int(trace.t_ms[3 * len(trace) // 4])
    panel.add_health_event(1, mid, "Unhealthy", late)
    events = [HealthChange(mid, 1, "Unhealthy"), HealthChange(late, 1, "Healthy")]
    want = _direct(demo, gpus=("24GiB", "48GiB", "16GB"), events=events, **kw)
    _assert_shows(panel, want, base)
    assert panel.ev_list.options[0].startswith("GPU 1 Unhealthy from ")

    panel.ev_list.index = 0
    panel._remove_event()
    _assert_shows(panel, _direct(demo, gpus=("24GiB", "48GiB", "16GB"), **kw), base)


def test_editor_buttons_and_bad_input(panel, demo):
    trace, _, _ = demo
    before = dict(panel.summary)
    panel.gpu_sizes.value = "24GiB, lots"
    assert "not replayed" in panel.status.value and "GPU 1 size" in panel.status.value
    assert panel.summary == before  # the last good result stays
    panel.gpu_sizes.value = "24GiB, 24GiB"
    panel.ev_gpu.value, panel.ev_state.value = 0, "Degraded"
    panel.ev_from.value, panel.ev_to.value = "2024-11-25T00:00:00Z", ""
    panel.ev_add.click()
    t = 1_732_492_800_000  # 2024-11-25T00:00:00Z
    _assert_shows(panel, _direct(demo, events=[HealthChange(t, 0, "Degraded")]), _direct(demo))
    # A health event on a GPU that no longer exists is refused, not silently dropped.
    panel.ev_gpu.value = 1
    panel.ev_add.click()
    panel.gpu_count.value = 1
    assert "only 1 GPUs" in panel.status.value


def test_keeps_start_up_gpus_and_foreign_usage(demo):
    trace, config, _ = demo
    gpus = (Gpu(24 * GiB, used=GiB // 2), Gpu(24 * GiB, health="Degraded"))
    panel = TuningPanel(trace.slice(None, int(trace.t_ms[2000])), config, gpus, charts=False)
    assert panel.settings()["gpus"] == gpus
    panel.headroom.value = 0
    want = replay(trace.slice(None, int(trace.t_ms[2000])), config, gpus, headroom=0, warn=False)
    assert panel.summary == want.summary()


def test_size_text_round_trips():
    from concerto_lab.model.sizes import parse_size

    for b in (24 * GiB, 16 * 10**9, 25_769_803_776 + 1, 80 * 10**9, 512 * 2**20):
        assert parse_size(size_text(b)) == b
    assert size_text(24 * GiB) == "24GiB" and size_text(16 * 10**9) == "16GB"
