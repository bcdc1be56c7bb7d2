"""Charts: what they embed is bounded and exact, they export offline, and their axes say units."""

import json
import struct

import numpy as np
import polars as pl
import pytest

from concerto_lab.analysis.occupancy import residency
from concerto_lab.model.cluster import ModelSpec, RoutingConfig
from concerto_lab.model.trace import Trace
from concerto_lab.present import charts as C
from concerto_lab.replay import replay

GB = 10**9


@pytest.fixture(scope="module")
def demo():
    from concerto_lab.demo import load_demo

    trace, config, gpus = load_demo()
    return trace, config, gpus, replay(trace, config, gpus, warn=False)


@pytest.fixture(scope="module")
def huge():
    """10 M requests over 120 models and 2 months on 4 x 40 GB (and an LFU replay of the first
    1 M requests to compare with): every chart path at scale."""
    rng = np.random.default_rng(7)
    n = 10_000_000
    t = 1_733_011_200_000 + np.cumsum(rng.integers(0, 520, n))
    p = 1.0 / np.arange(1, 121) ** 1.4
    codes = rng.choice(120, size=n, p=p / p.sum()).astype(np.int32)
    names = [f"m{k:03d}" for k in range(120)] + ["gone"]
    codes[::5003] = 120  # a few unknown ids, so every decision kind occurs
    trace = Trace(t, codes, names)
    sizes = rng.integers(2, 11, 120) * GB
    config = RoutingConfig(models=tuple(ModelSpec(names[k], int(sizes[k])) for k in range(120)),
                           headroom=GB)  # fmt: skip
    gpus = ("40GB",) * 4
    head = Trace(t[:1_000_000], codes[:1_000_000], names)
    return replay(trace, config, gpus, warn=False), replay(head, config, gpus, policy="lfu",
                                                           warn=False)  # fmt: skip


def _datasets(chart) -> dict:
    spec = chart.to_dict()  # raises MaxRowsError if a dataset were too big
    return {k: len(v) for k, v in spec.get("datasets", {}).items()}


def test_every_chart_stays_small_on_10m_requests(huge):
    r, other = huge
    assert len(r) == 10_000_000
    s = r.summary()
    assert s["loads"] > 10_000 and s["routed"] > 1_000_000 and s["rejected"] > 0
    # The dashboard holds every single-replay chart and the side-by-side comparison.
    for chart in (C.dashboard(r, baseline=other), C.compare_chart([r, other], delta=True)):
        sizes = _datasets(chart)
        assert sizes and max(sizes.values()) <= C.MAX_ROWS
        assert sum(sizes.values()) <= 3 * C.MAX_ROWS


def test_decisions_data_is_exact(huge):
    r, _ = huge
    d = C.decisions_data(r)
    s = r.summary()
    tot = d.group_by("decision").agg(pl.col("requests").sum())
    got = dict(zip(tot["decision"], tot["requests"]))
    assert got == {"routed": s["routed"], "cold start": s["loads"], "rejected": s["rejected"]}
    assert d.height <= 3 * 200
    # Stacks are contiguous: y0 of a decision is y1 of the one below it.
    wide = d.filter(pl.col("decision") == "cold start")
    below = d.filter(pl.col("decision") == "routed")
    assert (wide["y0"] == below["y1"]).all()


def test_occupancy_data_adds_up(huge):
    r, _ = huge
    iv = residency(r)
    occ = C.occupancy_data(r, intervals=iv)
    assert occ["model"].n_unique() <= 8 + 2
    # Mean GiB per bucket, summed over models, never exceeds the GPU.
    per = occ.group_by("t_ms", "gpu").agg(pl.col("gib").sum(), pl.col("y1").max())
    assert (per["gib"] <= 40 * GB / C.GiB + 1e-9).all()
    assert np.allclose(per["gib"].to_numpy(), per["y1"].to_numpy())
    # Byte-time is kept: sum(gib * width) equals the intervals' vram * duration.
    width = int((occ["t_end_ms"] - occ["t_ms"])[0])
    total = float((occ["gib"] * C.GiB * width).sum())
    start, end = int(occ["t_ms"].min()), int(occ["t_end_ms"].max())
    clip = iv.with_columns(pl.col("start_ms").clip(start, end), pl.col("end_ms").clip(start, end))
    dur = (clip["end_ms"] - clip["start_ms"]).cast(pl.Float64)
    want = float((dur * clip["vram_bytes"].cast(pl.Float64)).sum())
    assert total == pytest.approx(want, rel=1e-9)


def test_who_evicted_whom_counts_every_eviction(huge):
    r, _ = huge
    m = C.evictions_matrix(r, top=6)
    assert m["evictions"].sum() == len(r.evict_model)
    assert m["loader"].n_unique() <= 7 and m["victim"].n_unique() <= 7


def test_compare_delta(huge):
    r, other = huge
    d = C.compare_data({"lru": r, "lfu": other}, delta=True)
    got = dict(zip(d["metric"], d["value"]))
    a, b = r.summary(), other.summary()
    assert got == {k: b[k] - a[k] for k in C.COMPARE_METRICS}


def test_pick_bucket():
    day = 86_400_000
    start = 1_731_689_870_000
    assert C.pick_bucket(start, start + 23 * day)[1:] == (3 * 3_600_000, 185, "3 h")
    assert C.pick_bucket(start, start + 3_600_000)[3] == "30 s"
    lo, width, n, _ = C.pick_bucket(start, start + 10 * 365 * day)
    assert n <= 200 and lo <= start and lo + n * width > start + 10 * 365 * day


def test_axes_say_their_units(demo):
    *_, r = demo
    text = json.dumps(C.dashboard(r).to_dict())
    for title in ("time (UTC)", "requests per 3 h", "GPU 0: GiB resident", "GPU 1: GiB resident",
                  "count over the whole replay", "model loaded (cold start)", "model evicted",
                  "capacity 25.8 GB (24.0 GiB)"):  # fmt: skip
        assert title in text, title


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_offline_png_and_svg_export(demo, tmp_path):
    *_, r = demo
    png = C.save_png(C.decisions_chart(r), tmp_path / "d.png")
    w, h = _png_size(png.read_bytes())
    assert w > 600 and h > 200
    svg = C.save_svg(C.occupancy_chart(r), tmp_path / "o.svg").read_text()
    assert svg.startswith("<svg") and "GiB resident" in svg and "time (UTC)" in svg
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        C.save(C.churn_chart(r), tmp_path / "x.jpg")


def test_cli_writes_a_dashboard(tmp_path, capsys):
    from concerto_lab.present.cli import main

    out = tmp_path / "dash.png"
    assert main(["replay", "--chart", str(out)]) == 0
    w, h = _png_size(out.read_bytes())
    assert w > 1000 and h > 1500
    assert "charts written to" in capsys.readouterr().out
    assert main(["replay", "--chart", str(tmp_path / "dash.gif")]) == 2
