"""Sweeps: every row equals the replay of its setting; grid files; reading the result."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from concerto_lab.analysis.sweep import (
    KERNEL_STAMP,
    frame,
    prepare,
    replay_span,
    run_local,
    size_label,
    sweep,
)
from concerto_lab.analysis.sweep_grid import Grid, GridError, load_grid, parse_grid
from concerto_lab.analysis.sweep_view import (
    combine_nodes,
    grid_cells,
    heatmap,
    pareto_chart,
    pareto_front,
    ranked,
)
from concerto_lab.model.cluster import ConfigError, Crash, HealthChange, ModelSpec, RoutingConfig
from concerto_lab.model.trace import Trace
from concerto_lab.replay import replay

T0 = 1_733_227_200_000  # 2024-12-03T12:00:00Z
GB = 10**9
SUMMARY_KEYS = ("requests", "routed", "loads", "evictions", "rejected", "rejected_unknown",
                "rejected_pinned", "rejected_no_fit", "routed_share", "bytes_loaded")  # fmt: skip


def zipf_trace(n: int, k: int, seed: int, unknown: bool = True) -> Trace:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, k + 1) ** 1.1
    codes = rng.choice(k, size=n, p=p / p.sum())
    t = T0 + np.cumsum(rng.integers(0, 4000, n))  # repeats of the same ms too
    names = np.array([f"m{i}" for i in range(k)] + ["ghost"])
    if unknown:
        codes[rng.random(n) < 0.01] = k  # a few ids outside the registry
    return Trace.from_columns(t, names[codes])


@pytest.fixture(scope="module")
def trace():
    return zipf_trace(3000, 9, seed=11)


@pytest.fixture(scope="module")
def config():
    sizes = [7, 5, 9, 3, 6, 4, 8, 2, 11]
    return RoutingConfig(models=tuple(ModelSpec(f"m{i}", s * GB) for i, s in enumerate(sizes)),
                         policy="lru", headroom=GB, source="concerto.toml")  # fmt: skip


def full_grid(trace):
    mid = int(trace.t_ms[len(trace) // 2])
    return Grid(
        policy=["lru", "lfu", "size_weighted_lru"],
        headroom=["0", "3GB"],
        pins={"none": [], "m0+m3": ["m0", "m3"]},
        gpus={"2x16": ["16GB", "16GB"], "mixed3": ["12GB", "20GB", "16GiB"]},
        scenarios={
            "calm": [],
            "gpu1-flaps": [{"after": "1h", "gpu": 1, "health": "Unhealthy"},
                           HealthChange(mid, 1, "Degraded"), Crash(mid + 5, "m1")],
        },
    )  # fmt: skip


def events_of(row, trace, grid):
    first = int(trace.t_ms[0])
    [scen] = [c for c in grid.scenarios if c.name == row["scenario"]]
    return [e.at(first) if hasattr(e, "at") else e for e in scen.value]


def check_rows_equal_replays(df, trace, config, grid, fixes=()):
    for row in df.iter_rows(named=True):
        res = replay(trace, config, row["gpu_bytes"], policy=row["policy"],
                     headroom=row["headroom_bytes"], pins=row["pinned"],
                     events=events_of(row, trace, grid), fixes=fixes, warn=False)  # fmt: skip
        s = res.summary()
        for key in SUMMARY_KEYS:
            assert row[key] == s[key], (key, row)
        per_gpu = res.per_gpu()
        assert row["gpu_loads"] == per_gpu["loads"].to_list()
        assert row["gpu_evictions"] == per_gpu["evictions"].to_list()


# --- equality with individual replays --------------------------------------------------------------
def test_every_row_equals_its_replay(trace, config):
    grid = full_grid(trace)
    df = sweep(trace, config, grid, progress=False)
    assert df.height == len(grid) == 48
    assert df["setting"].to_list() == list(range(48))
    check_rows_equal_replays(df, trace, config, grid)
    # The grid really exercises the dimensions: outcomes differ and every reject kind occurs.
    assert df["loads"].n_unique() > 20
    assert df["rejected_unknown"].min() > 0
    assert df["rejected_pinned"].max() > 0
    assert df.filter(pl.col("scenario") == "gpu1-flaps")["loads"].sum() != \
        df.filter(pl.col("scenario") == "calm")["loads"].sum()  # fmt: skip
    assert set(df["n_gpus"]) == {2, 3}
    assert df.filter(pl.col("pins") == "m0+m3")["pinned"][0].to_list() == ["m0", "m3"]


def test_fixes_apply_to_every_setting(trace, config):
    grid = Grid(policy=["lfu"], headroom=["0"], gpus=[["16GB", "16GB"]],
                scenarios={"down": [{"after": "30m", "gpu": 0, "health": "Unhealthy"}]})
    plain = sweep(trace, config, grid, progress=False)
    fixed = sweep(trace, config, grid, progress=False, fixes=["route_healthy_copy"])
    check_rows_equal_replays(fixed, trace, config, grid, fixes=["route_healthy_copy"])
    assert fixed["loads"][0] != plain["loads"][0]


def test_defaults_come_from_config_and_gpus_argument(trace, config):
    df = sweep(trace, config, {"policy": ["lfu", "lru"]}, gpus=["16GB", "24GB"], progress=False)
    assert df["headroom_bytes"].to_list() == [GB, GB]
    assert df["headroom"].to_list() == ["1GB", "1GB"]
    assert df["gpus"].to_list() == ["16GB+24GB"] * 2
    assert df["scenario"].to_list() == ["none"] * 2
    r = replay(trace, config, ["16GB", "24GB"], policy="lfu", warn=False).summary()
    assert df.row(0, named=True)["loads"] == r["loads"]


def test_threads_and_chunks_do_not_change_results(trace, config):
    grid = full_grid(trace)
    one = sweep(trace, config, grid, progress=False, workers=1)
    two = sweep(trace, config, grid, progress=False, workers=2)
    assert one.equals(two)
    rows, jobs, width = prepare({"trace": trace}, config, grid, None)
    arrays = {0: (trace.t_ms, trace.model)}
    chunked = run_local(arrays, jobs, width, workers=2, chunk=257)  # evictions span chunks
    assert frame(rows, jobs, chunked, [len(trace)]).equals(one)


def test_many_nodes_swept_together(trace, config):
    other = zipf_trace(2000, 9, seed=5)
    grid = Grid(policy=["lru", "lfu"], headroom=["0", "2GB"], gpus=[["16GB", "16GB"]])
    both = sweep({"node-a": trace, "node-b": other}, config, grid, progress=False)
    assert both.height == 8
    assert both["node"].to_list() == ["node-a"] * 4 + ["node-b"] * 4
    alone = sweep(other, config, grid, progress=False)
    assert both.filter(pl.col("node") == "node-b").drop("node").equals(alone.drop("node"))
    fleet = combine_nodes(both)
    assert fleet.height == 4 and fleet["node"].to_list() == ["all"] * 4
    a, b = (both.filter(pl.col("node") == n) for n in ("node-a", "node-b"))
    assert fleet["loads"].to_list() == (a["loads"] + b["loads"]).to_list()
    assert fleet["gpu_loads"][1].to_list() == [x + y for x, y in zip(a["gpu_loads"][1], b["gpu_loads"][1])]
    assert fleet["routed_share"][0] == pytest.approx(
        (a["routed"][0] + b["routed"][0]) / (len(trace) + len(other)))


def test_progress_callback_counts_requests(trace, config):
    seen = []
    sweep(trace, config, {"policy": ["lru", "lfu"]}, gpus=["16GB"], progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (2 * len(trace), 2 * len(trace))


def test_empty_trace_still_applies_events(config):
    empty = Trace.from_columns(np.zeros(0, dtype=np.int64), [])
    df = sweep(empty, config, {"policy": ["lru"]}, gpus=["16GB"], progress=False)
    assert df["requests"].to_list() == [0] and df["routed_share"].to_list() == [0.0]


def test_replay_span_cache_is_keyed_on_the_kernel_source():
    cells = [c.cell_contents for c in replay_span.py_func.__closure__]
    assert KERNEL_STAMP in cells and KERNEL_STAMP != 0


# --- grid files ------------------------------------------------------------------------------------
GRID_TOML = """
policy = ["lru", "lfu"]
headroom = ["0", "512MiB", 2000000000]
gpus = [["24GiB", "24GiB"], ["24GiB", "80GB"]]

[pins]
none = []
two = ["m1", "m0"]

[scenarios]
calm = []
flap = [
  { after = "1d 6h", gpu = 1, health = "unhealthy" },
  { at = 2024-12-03T12:00:00Z, gpu = 1, health = "Healthy" },
  { t_ms = 1733227300000, gpu = 0, health = "Degraded" },
]
"""


def test_grid_file_is_read(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(GRID_TOML)
    g = load_grid(path)
    assert len(g) == 2 * 3 * 2 * 2 * 2
    assert [c.value for c in g.headroom] == [0, 512 * 2**20, 2 * GB]
    assert [c.name for c in g.headroom] == ["0", "512MiB", "2000000000"]
    assert [c.name for c in g.gpus] == ["2x24GiB", "24GiB+80GB"]
    assert g.gpus[1].value[1].total == 80 * GB
    assert [c.name for c in g.pins] == ["none", "two"] and g.pins[1].value == {"m0", "m1"}
    flap = g.scenarios[1].value
    assert flap[0].offset_ms == 30 * 3_600_000 and flap[0].health == "Unhealthy"
    assert flap[0].at(T0) == HealthChange(T0 + 30 * 3_600_000, 1, "Unhealthy")
    assert flap[1] == HealthChange(T0, 1, "Healthy")
    assert flap[2] == HealthChange(1733227300000, 0, "Degraded")
    s = g.settings()
    assert (s[0].policy.name, s[0].scenario.name, s[1].scenario.name) == ("lru", "calm", "flap")


@pytest.mark.parametrize(
    "text, field, words",
    [
        ('polciy = ["lru"]', "polciy", "did you mean 'policy'"),
        ('policy = ["lru", "fifo"]', "policy[1]", "unknown policy 'fifo'"),
        ('headroom = ["1 XB"]', "headroom[0]", "unknown unit"),
        ('headroom = []', "headroom", "empty"),
        ('gpus = [["24GB", "lots"]]', "gpus[0][1]", "cannot parse"),
        ('gpus = ["24GB"]', "gpus[0]", "list of sizes"),
        ('pins = [["a"], ["a"]]', "pins[1]", "duplicate"),
        ('pins = ["a"]', "pins[0]", "list of model ids"),
        ('scenarios = [[]]', "scenarios", "need names"),
        ('[scenarios]\nx = [{ after = "1h", gpu = 0, health = "Down" }]', "scenarios.x[0].health",
         "unknown health 'Down'"),
        ('[scenarios]\nx = [{ after = "1h", health = "Healthy" }]', "scenarios.x[0].gpu", "missing"),
        ('[scenarios]\nx = [{ after = "1h", t_ms = 5, gpu = 0, health = "Healthy" }]',
         "scenarios.x[0]", "exactly one of"),
        ('[scenarios]\nx = [{ after = "soon", gpu = 0, health = "Healthy" }]',
         "scenarios.x[0].after", "cannot read duration"),
        ('[scenarios]\nx = [{ after = "1h", gpu = -1, health = "Healthy" }]',
         "scenarios.x[0].gpu", "GPU index"),
        ('[scenarios]\nx = [{ after = "1h", gpu = 0, helth = "Healthy" }]',
         "scenarios.x[0].helth", "did you mean 'health'"),
        ('policy = ["lru"', None, "invalid TOML"),
    ],
)  # fmt: skip
def test_grid_file_errors_name_file_and_field(tmp_path, text, field, words):
    path = tmp_path / "my-grid.toml"
    path.write_text(text)
    with pytest.raises(GridError) as e:
        load_grid(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ")
    if field:
        assert f": {field}: " in msg or f": {field} " in msg or msg.endswith(f": {field}"), msg
    assert words in msg, msg
    assert isinstance(e.value, ConfigError)  # the CLI turns it into exit code 2


def test_grid_errors_found_against_config_and_layouts(trace, config):
    g = parse_grid('pins = [["m0", "nope"]]\ngpus = [["16GB"]]', source="g.toml")
    with pytest.raises(GridError, match=r"^g.toml: pins.m0\+nope: .*'nope'"):
        sweep(trace, config, g, progress=False)
    g = parse_grid('gpus = [["16GB"]]\n[scenarios]\nx = [{ after = "1h", gpu = 1, '
                   'health = "Unhealthy" }]', source="g.toml")  # fmt: skip
    with pytest.raises(GridError, match=r"^g.toml: scenarios.x\[0\].gpu: no GPU 1 in layout '1x16GB'"):
        sweep(trace, config, g, progress=False)
    with pytest.raises(GridError, match="no GPU layout"):
        sweep(trace, config, {"policy": "lru"}, progress=False)
    with pytest.raises(ConfigError, match="unknown sweep engine"):
        sweep(trace, config, {"policy": "lru"}, gpus=["16GB"], engine="spark")


def test_size_labels_are_exact():
    assert [size_label(x) for x in (0, GB, 2**30, 3 * 2**29, 1234)] == ["0", "1GB", "1GiB",
                                                                       "1536MiB", "1234"]


# --- reading the result ----------------------------------------------------------------------------
def known_table() -> pl.DataFrame:
    """Six settings with hand-picked outcomes (metrics only matter here)."""
    rows = [  # policy, headroom GB, n_gpus, loads, rejected, evictions
        ("lru", 0, 2, 100, 0, 90),
        ("lfu", 0, 2, 100, 0, 80),  # same loads, fewer evictions: ranks above lru/0
        ("lru", 2, 2, 120, 0, 100),  # more headroom for more cold starts: on the front
        ("lfu", 2, 2, 150, 0, 130),  # dominated by lru/2
        ("lru", 4, 2, 130, 0, 120),  # on the front
        ("lfu", 4, 2, 10, 500, 5),  # few cold starts because it rejects
    ]
    n = len(rows)
    return pl.DataFrame({
        "node": ["n"] * n, "setting": list(range(n)), "policy": [r[0] for r in rows],
        "headroom": [f"{r[1]}GB" for r in rows], "headroom_bytes": [r[1] * GB for r in rows],
        "pins": ["none"] * n, "pinned": [[]] * n, "gpus": ["2x24GB"] * n,
        "gpu_bytes": [[24 * GB] * 2] * n, "n_gpus": [r[2] for r in rows],
        "scenario": ["calm"] * n, "requests": [1000] * n,
        "routed": [1000 - r[3] - r[4] for r in rows], "loads": [r[3] for r in rows],
        "evictions": [r[5] for r in rows], "rejected": [r[4] for r in rows],
        "rejected_unknown": [0] * n, "rejected_pinned": [0] * n,
        "rejected_no_fit": [r[4] for r in rows], "routed_share": [0.0] * n,
        "bytes_loaded": [r[3] * GB for r in rows], "gpu_loads": [[r[3], 0] for r in rows],
        "gpu_evictions": [[r[5], 0] for r in rows],
    }, schema_overrides={"pinned": pl.List(pl.String)})  # fmt: skip


def test_ranked_orders_rejects_then_cold_starts():
    r = ranked(known_table(), top=None)
    assert r["setting"].to_list() == [1, 0, 2, 4, 3, 5]
    assert r["rank"].to_list() == [1, 2, 3, 4, 5, 6]
    assert ranked(known_table(), top=2)["setting"].to_list() == [1, 0]
    assert ranked(known_table(), top=1, columns=None).columns[0] == "rank"


def test_pareto_front_of_cold_starts_vs_headroom():
    df = known_table()
    assert pareto_front(df)["setting"].to_list() == [0, 1, 2, 4]  # rejecting setting 5 excluded
    assert pareto_front(df, rejects="ignore")["setting"].to_list() == [5]  # the artefact
    assert pareto_front(df, rejects="objective")["setting"].to_list() == [0, 1, 2, 5, 4]


def test_grid_cells_and_heatmap_aggregate_first(tmp_path):
    df = known_table()
    cells = grid_cells(df)
    assert cells.height == 6
    best = grid_cells(df.with_columns(pl.lit("lru").alias("policy")))  # cells of two settings
    assert best.sort("headroom_bytes")["loads"].to_list() == [100, 120, 130]
    assert grid_cells(df, agg="mean", y="n_gpus")["loads"].to_list() == [100.0, 135.0, 70.0]
    # A big sweep: 20,000 rows still make one mark per cell (no MaxRowsError), rendered offline.
    big = pl.concat([df.with_columns(pl.col("setting") + 6 * k) for k in range(3400)])
    chart = heatmap(big)
    assert len(chart.data) == 6
    chart.save(tmp_path / "h.svg")
    assert (tmp_path / "h.svg").read_text().lstrip().startswith("<svg")
    pareto_chart(big).save(tmp_path / "p.svg")


# --- the command line ------------------------------------------------------------------------------
def test_cli_sweep_on_the_bundled_demo(tmp_path, capsys):
    from concerto_lab import demo
    from concerto_lab.present.cli import main
    from concerto_lab.present.cli_sweep import DEMO_GRID

    out = tmp_path / "results.parquet"
    assert main(["sweep", "--out", str(out), "--no-progress", "--top", "3"]) == 0
    text = capsys.readouterr().out
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0].split("|")[1].strip() == "rank" and len(table) == 1 + 3
    df = pl.read_parquet(out)
    trace, config, gpus = demo.load_demo()
    assert df.equals(sweep({"demo": trace}, config, DEMO_GRID, gpus=gpus, progress=False))
    best = ranked(df, 1, columns=None).row(0, named=True)
    cells = [c.strip() for c in table[1].split("|")[1:-1]]
    assert cells[:3] == ["1", "demo", str(best["setting"])]
    assert cells[8] == f"{best['loads']:,}"  # loads column, thousands separated
    grid = load_grid(DEMO_GRID)
    events = events_of(best, trace, grid)
    s = replay(trace, config, best["gpu_bytes"], policy=best["policy"],
               headroom=best["headroom_bytes"], pins=best["pinned"], events=events,
               warn=False).summary()  # fmt: skip
    assert (s["loads"], s["rejected"]) == (best["loads"], best["rejected"])


CONFIG_TOML = """
[routing]
eviction_policy = "lru"
vram_headroom = "1GB"

[[models]]
id = "m0"
vram_required = "7GB"

[[models]]
id = "m1"
vram_required = "5GB"

[[models]]
id = "m2"
vram_required = "9GB"
"""


def test_cli_sweep_logs_as_nodes(tmp_path, capsys):
    from concerto_lab.present.cli import main

    (tmp_path / "concerto.toml").write_text(CONFIG_TOML)
    (tmp_path / "grid.toml").write_text(
        'policy = ["lru", "lfu"]\nheadroom = ["0", "2GB"]\ngpus = [["16GB"], ["16GB", "8GB"]]\n')
    traces = {}
    for name, seed in (("east.csv", 1), ("west.csv", 2)):
        t = zipf_trace(400, 3, seed=seed, unknown=False)
        pl.DataFrame({"t_ms": t.t_ms, "model": t.model_names().cast(pl.String)}).write_csv(
            tmp_path / name)
        traces[name] = t
    out = tmp_path / "r.parquet"
    args = ["sweep", str(tmp_path / "east.csv"), str(tmp_path / "west.csv"), "--nodes",
            "--config", str(tmp_path / "concerto.toml"), "--grid", str(tmp_path / "grid.toml"),
            "--time-col", "t_ms", "--model-col", "model", "--time-unit", "ms",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert "8 settings x 2 nodes" in capsys.readouterr().out
    df = pl.read_parquet(out)
    assert df.height == 16 and df["node"].unique(maintain_order=True).to_list() == list(traces)
    from concerto_lab.io.config import load_config

    config = load_config(tmp_path / "concerto.toml")
    for node, t in traces.items():
        for row in df.filter(pl.col("node") == node).iter_rows(named=True):
            s = replay(t, config, row["gpu_bytes"], policy=row["policy"],
                       headroom=row["headroom_bytes"], warn=False).summary()  # fmt: skip
            assert all(row[k] == s[k] for k in SUMMARY_KEYS)


def test_cli_sweep_errors_exit_2_naming_the_field(tmp_path, capsys):
    from concerto_lab.present.cli import main

    bad = tmp_path / "g.toml"
    bad.write_text('policy = ["lru", "mru"]\n')
    assert main(["sweep", "--grid", str(bad), "--no-progress"]) == 2
    assert f"{bad}: policy[1]: unknown policy 'mru'" in capsys.readouterr().err
    (tmp_path / "log.csv").write_text("t_ms,model\n1,m0\n")
    assert main(["sweep", str(tmp_path / "log.csv"), "--config", "x.toml"]) == 2
    assert "--grid grid.toml is required" in capsys.readouterr().err
