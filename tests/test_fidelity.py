"""Replaying production (start-up snapshots, restarts, crashes) against the logged decisions.

The fixture (tests/fixtures/production, see its README) is a 3-day Concerto 0.1 log whose every
decision is the reference crate's; ``decisions.expected.jsonl`` holds them with their log lines.
"""

import json
from pathlib import Path

import pytest

from concerto_lab.analysis.fidelity import CAUSE_FAILED_LAUNCH, CAUSE_IN_FLIGHT, verify
from concerto_lab.analysis.production import read_production
from concerto_lab.io.config import load_config, parse_config
from concerto_lab.io.startup import read_nvidia_smi_csv
from concerto_lab.model.cluster import Gpu
from concerto_lab.present.cli import main

from conftest import read_jsonl

FIX = Path(__file__).parent / "fixtures" / "production"
LOG = FIX / "concerto.log.jsonl"
N_BEFORE_RESTART = 3448


@pytest.fixture(scope="module")
def config():
    return load_config(FIX / "concerto.toml")


@pytest.fixture(scope="module")
def snapshots(config):
    return [read_nvidia_smi_csv(FIX / f"gpus-start-{k}.csv", config) for k in (1, 2)]


@pytest.fixture(scope="module")
def expected():
    return read_jsonl(FIX / "decisions.expected.jsonl")


@pytest.fixture(scope="module")
def production(snapshots, config):
    return read_production(LOG, snapshots, config)


@pytest.fixture(scope="module")
def report(production, config):
    return verify(production, config)


# --- the faithful replay -------------------------------------------------------------------------
def test_production_events_read_off_the_log(production):
    assert [(s.number, s.line, s.pos) for s in production.starts] == [
        (1, 1, 0), (2, 6635, N_BEFORE_RESTART)]  # fmt: skip
    (restart,) = production.restarts
    assert restart.pos == N_BEFORE_RESTART and restart.t_ms == 1733303882711
    assert restart.gpus[2].health == "Degraded"
    assert restart.gpus[1].available == 25_328_353_280
    assert [(c.model, c.t_ms) for c in production.crashes] == [
        ("qwen2.5-3b-instruct", 1733239571476),
        ("mistral-7b-instruct-v0.3-awq", 1733282537920),
        ("qwen2.5-7b-instruct", 1733366402090),
        ("gemma-2-2b-it", 1733423400638),
    ]
    assert production.notes == []
    counts = production.logged["decision"].cast(str).value_counts()
    assert dict(counts.iter_rows()) == {"route": 6508, "load": 947, "reject": 28}
    assert production.logged["evict"].list.len().sum() == 921


def test_logged_decisions_equal_the_reference_where_the_log_shows_them(production, expected):
    logged = production.decisions().to_dicts()
    for got, want in zip(logged, expected):
        assert got["log_line"] == want["log_line"] and got["model"] == want["model"]
        assert str(got["decision"]) == want["decision"]
        if want["decision"] == "load":
            assert (got["gpu"], got["evict"]) == (want["gpu"], want["evict"])
        assert got["reason"] == want["reason"]


def test_verify_reports_full_agreement(report):
    assert report.ok and report.n_divergences == 0
    assert report.agreement == 1.0 and report.requests == 7483
    s = report.summary()
    assert s["by_logged_decision"] == {
        "load": {"agree": 947, "requests": 947},
        "reject": {"agree": 28, "requests": 28},
        "route": {"agree": 6508, "requests": 6508},
    }


def test_replayed_decisions_equal_the_expected_file_exactly(report, expected, tmp_path):
    assert report.decisions().to_dicts() == expected
    out = tmp_path / "d.jsonl"
    report.write_decisions(out)
    lines = out.read_text().splitlines()
    assert [json.loads(x) for x in lines] == expected
    assert list(json.loads(lines[0])) == [
        "i", "t_ms", "model", "decision", "gpu", "evict", "reason", "log_line"]  # fmt: skip


def test_cli_verify_exit_0_and_decisions_file(tmp_path, capsys, expected):
    out = tmp_path / "decisions.jsonl"
    code = main(["verify", str(LOG), "--config", str(FIX / "concerto.toml"),
                 "--gpus-csv", str(FIX / "gpus-start-1.csv"),
                 "--gpus-csv", str(FIX / "gpus-start-2.csv"), "--decisions", str(out)])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0
    assert "7,483 / 7,483 = 100.00 %" in text
    assert read_jsonl(out) == expected


def test_cli_verify_json(capsys):
    code = main(["verify", str(LOG), "--config", str(FIX / "concerto.toml"), "--json",
                 "--gpus-csv", str(FIX / "gpus-start-1.csv"),
                 "--gpus-csv", str(FIX / "gpus-start-2.csv")])  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert doc["agreement"] == 1.0 and doc["divergences"] == 0 and doc["crashes"] == 4


def test_cli_verify_a_log_rotated_at_the_restart(tmp_path, capsys):
    lines = LOG.read_text().splitlines(keepends=True)
    (tmp_path / "concerto.log.1").write_text("".join(lines[:6634]))  # up to the shutdown
    (tmp_path / "concerto.log").write_text("".join(lines[6634:]))
    code = main(["verify", str(tmp_path), "--config", str(FIX / "concerto.toml"), "--json",
                 "--gpus-csv", str(FIX / "gpus-start-1.csv"),
                 "--gpus-csv", str(FIX / "gpus-start-2.csv")])  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert doc["agreement"] == 1.0 and doc["divergences"] == 0 and doc["crashes"] == 4


# --- without the second snapshot -----------------------------------------------------------------
def _mismatches(report, expected) -> list[int]:
    return [e["i"] for g, e in zip(report.decisions().to_dicts(), expected) if g != e]


def test_start1_availability_after_restart_gives_the_readmes_2940(snapshots, config, expected):
    """The README's one-scenario replay: start-2 health, but start-1 free memory."""
    s1, s2 = snapshots
    wrong = tuple(Gpu(total=a.total, used=a.used, health=b.health, name=a.name)
                  for a, b in zip(s1, s2))  # fmt: skip
    rep = verify(read_production(LOG, [s1, wrong], config), config, states=0)
    bad = _mismatches(rep, expected)
    assert len(bad) == 2940 and min(bad) == N_BEFORE_RESTART
    assert expected[N_BEFORE_RESTART]["gpu"] == 0 and not rep.ok


def test_missing_second_snapshot_is_named_and_diverges_at_request_3448(snapshots, config,
                                                                       expected):  # fmt: skip
    prod = read_production(LOG, snapshots[:1], config)
    assert any("start 2 (log line 6635) has no start-up snapshot" in n for n in prod.notes)
    rep = verify(prod, config, states=1)
    bad = _mismatches(rep, expected)
    assert len(bad) == 3268 and min(bad) == N_BEFORE_RESTART  # health stays Healthy too
    first = rep.divergences[0]
    assert (first.i, first.log_line, first.differs) == (3448, 6638, ["gpu"])
    assert first.logged["gpu"] == 0 and first.replayed["gpu"] == 2
    # the state just before it: freshly restarted, nothing loaded, start-1 memory
    assert [g["loaded_models"] for g in first.state] == [[], [], []]
    assert [g["memory_available_bytes"] for g in first.state] == [s.available for s in snapshots[0]]
    assert rep.n_divergences == 539 and all(d.start == 2 for d in rep.divergences)


def test_switching_crashes_off_is_a_what_if_that_diverges_after_the_first_crash(production, config):
    rep = verify(production, config, crashes=False, states=0)
    first = rep.divergences[0]
    # first request for qwen2.5-3b-instruct after its crash at log line 2187
    assert (first.i, first.log_line, first.model) == (1094, 2190, "qwen2.5-3b-instruct")
    assert first.logged["decision"] == "load" and first.replayed["decision"] == "route"
    assert rep.settings["crashes"] is False


# --- tampered copies of the log ------------------------------------------------------------------
def _lines() -> list[str]:
    return LOG.read_text().splitlines(keepends=True)


def _find(lines, after: int, message: str) -> int:
    """0-based index of the first line with ``message`` after 1-based line ``after``."""
    for k in range(after, len(lines)):
        if f'"message":"{message}"' in lines[k]:
            return k
    raise AssertionError(message)


def _verify_copy(tmp_path, lines, config, snapshots):
    p = tmp_path / "tampered.log.jsonl"
    p.write_text("".join(lines))
    return verify(read_production(p, snapshots, config), config), p


def test_altered_launch_gpu_is_one_divergence_at_its_line(tmp_path, config, snapshots, expected):
    e = expected[11]
    assert (e["decision"], e["gpu"], e["evict"], e["log_line"]) == ("load", 1, [], 39)
    lines = _lines()
    k = _find(lines, e["log_line"], "launching backend")
    lines[k] = lines[k].replace('"gpu_id":"gpu:1"', '"gpu_id":"gpu:0"')
    rep, _ = _verify_copy(tmp_path, lines, config, snapshots)
    assert rep.n_divergences == 1
    (d,) = rep.divergences
    assert (d.i, d.log_line, d.differs) == (11, 39, ["gpu"])
    assert d.logged["gpu"] == 0 and d.replayed["gpu"] == 1
    assert rep.agreement == pytest.approx(7482 / 7483)


def test_altered_victim_is_one_divergence_at_its_line(tmp_path, config, snapshots, expected):
    e = expected[119]
    assert e["evict"] == ["mistral-7b-instruct-v0.3-awq", "qwen2.5-coder-7b-instruct"]
    lines = _lines()
    k = _find(lines, e["log_line"], "evicting backend")
    k2 = _find(lines, k + 1, "evicting backend")
    assert '"victim":"qwen2.5-coder-7b-instruct"' in lines[k2]
    lines[k2] = lines[k2].replace("qwen2.5-coder-7b-instruct", "gemma-2-2b-it")
    rep, _ = _verify_copy(tmp_path, lines, config, snapshots)
    assert rep.n_divergences == 1
    (d,) = rep.divergences
    assert (d.i, d.log_line, d.differs) == (119, 237, ["evict"])
    assert d.logged["evict"] == ["mistral-7b-instruct-v0.3-awq", "gemma-2-2b-it"]
    assert d.replayed["evict"] == e["evict"]


def test_victims_in_another_order_diverge(tmp_path, config, snapshots, expected):
    e = expected[119]
    lines = _lines()
    k = _find(lines, e["log_line"], "evicting backend")
    k2 = _find(lines, k + 1, "evicting backend")
    lines[k], lines[k2] = lines[k2], lines[k]
    rep, _ = _verify_copy(tmp_path, lines, config, snapshots)
    (d,) = rep.divergences
    assert (d.i, d.differs) == (119, ["evict"])
    assert d.logged["evict"] == list(reversed(e["evict"]))


def test_load_turned_into_logged_reject_diverges_at_its_line(tmp_path, config, snapshots,
                                                             expected, capsys):  # fmt: skip
    e = expected[12]
    assert (e["decision"], e["gpu"], e["evict"], e["log_line"]) == ("load", 2, [], 42)
    lines = _lines()
    k = _find(lines, e["log_line"], "launching backend")
    ts = json.loads(lines[k])["timestamp"]
    reason = f"No GPU can fit model '{e['model']}' (requires 6.5 GiB), even after eviction"
    lines[k] = json.dumps({
        "timestamp": ts, "level": "WARN",
        "fields": {"message": "routing rejected", "model": e["model"], "reason": reason},
        "target": "concerto_api::orchestrator"}, separators=(",", ":")) + "\n"  # fmt: skip
    s = _find(lines, k + 1, "spawning backend process")
    lines[s] = lines[s].replace('"message":"spawning backend process"', '"message":"api error"')
    rep, path = _verify_copy(tmp_path, lines, config, snapshots)
    assert rep.n_divergences == 1
    (d,) = rep.divergences
    assert (d.i, d.log_line, d.differs) == (12, 42, ["decision"])
    assert d.logged == {"decision": "reject", "gpu": None, "evict": [], "reason": reason}
    assert d.replayed["decision"] == "load" and d.replayed["gpu"] == 2
    assert d.state is not None and sum(len(g["loaded_models"]) for g in d.state) == 7
    # the CLI says where, and fails
    code = main(["verify", str(path), "--config", str(FIX / "concerto.toml"),
                 "--gpus-csv", str(FIX / "gpus-start-1.csv"),
                 "--gpus-csv", str(FIX / "gpus-start-2.csv")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    assert "request 12 (log line 42," in out and "logged:   reject: No GPU can fit" in out
    assert "replayed: load on gpu 2" in out and "7,482 / 7,483" in out


# --- causes a replay cannot see, on small hand-written logs --------------------------------------
def _event(ts: str, message: str, level: str = "INFO", **fields) -> str:
    return json.dumps({"timestamp": f"2024-12-03T00:00:{ts}Z", "level": level,
                       "fields": {"message": message, **fields}, "target": "concerto"},
                      separators=(",", ":")) + "\n"  # fmt: skip


SMALL = parse_config(
    '[routing]\nvram_headroom = "0B"\n'
    '[[models]]\nid = "a"\nvram_required = "8GB"\n'
    '[[models]]\nid = "b"\nvram_required = "8GB"\n',
    source="small.toml",
)
ONE_GPU = [(Gpu(total=10_000_000_000),)]


def _small(tmp_path, events):
    p = tmp_path / "small.log.jsonl"
    p.write_text("".join(events))
    return verify(read_production(p, ONE_GPU, SMALL), SMALL)


def test_failed_launch_is_named(tmp_path):
    rep = _small(tmp_path, [
        _event("00.000000", "concerto ready to serve"),
        _event("01.000000", "incoming chat completion", model="a"),
        _event("01.000100", "launching backend", model="a", gpu_id="gpu:0"),
        # no "backend ready": the launch failed
        _event("59.000000", "incoming chat completion", model="a"),
        _event("59.000100", "launching backend", model="a", gpu_id="gpu:0"),
        _event("59.500000", "backend ready", model="a", pid=7, port=8100),
    ])  # fmt: skip
    (d,) = rep.divergences
    assert (d.i, d.log_line, d.cause) == (1, 4, CAUSE_FAILED_LAUNCH)
    assert "line 3" in d.explanation and "never logged 'backend ready'" in d.explanation


def test_request_during_an_in_flight_load_is_named(tmp_path):
    rep = _small(tmp_path, [
        _event("00.000000", "concerto ready to serve"),
        _event("01.000000", "incoming chat completion", model="a"),
        _event("01.000100", "launching backend", model="a", gpu_id="gpu:0"),
        _event("02.000000", "incoming chat completion", model="b"),
        _event("02.000100", "evicting backend", victim="a", pid=7, port=8100),
        _event("02.000200", "launching backend", model="b", gpu_id="gpu:0"),
        _event("03.000000", "incoming chat completion", model="a"),  # logged: nothing
        _event("30.000000", "backend ready", model="a", pid=7, port=8100),
    ])  # fmt: skip
    (d,) = rep.divergences
    assert (d.i, d.log_line, d.cause) == (2, 7, CAUSE_IN_FLIGHT)
    assert d.logged["decision"] == "route" and d.replayed == {
        "decision": "load", "gpu": 0, "evict": ["b"], "reason": None}  # fmt: skip
    assert any(x.startswith("a (launched at line 3)") for x in d.in_flight)
    assert "still in flight" in rep.render()


def test_downstream_divergences_point_at_the_first(tmp_path):
    rep = _small(tmp_path, [
        _event("00.000000", "concerto ready to serve"),
        _event("01.000000", "incoming chat completion", model="a"),
        _event("01.000100", "launching backend", model="a", gpu_id="gpu:0"),
        _event("01.500000", "backend ready", model="a", pid=7, port=8100),
        _event("02.000000", "incoming chat completion", model="b"),  # logged route: wrong
        _event("03.000000", "incoming chat completion", model="a"),  # replay evicted a for b
    ])  # fmt: skip
    first, second = rep.divergences
    assert (first.i, first.root, first.downstream, first.cause) == (1, 1, False, None)
    assert (second.i, second.root, second.downstream) == (2, 1, True)
    assert "after:    the divergence at request 1" in rep.render()


def test_log_without_start_line_and_extra_snapshot_are_noted(tmp_path):
    p = tmp_path / "mid.log.jsonl"
    p.write_text(_event("01.000000", "incoming chat completion", model="a")
                 + _event("01.000100", "launching backend", model="a", gpu_id="gpu:0"))
    prod = read_production(p, ONE_GPU * 2, SMALL)
    assert any("begins mid-run" in n for n in prod.notes)
    assert any("are unused" in n for n in prod.notes)
    assert verify(prod, SMALL).ok
