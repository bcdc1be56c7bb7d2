"""The CLI as users call it: exact oracle output, exit codes, no tracebacks."""

import json

import pytest

from concerto_lab.present.cli import main

from conftest import ORACLE, oracle_names, read_jsonl


@pytest.mark.parametrize("name", oracle_names())
def test_run_scenario_prints_the_oracle_lines(name, capsys):
    assert main(["run-scenario", str(ORACLE / f"{name}.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in out] == read_jsonl(ORACLE / f"{name}.expected.jsonl")


def test_run_scenario_keys_in_oracle_order(capsys):
    main(["run-scenario", str(ORACLE / "display_formatting.json")])
    first = capsys.readouterr().out.splitlines()[0]
    assert list(json.loads(first)) == ["i", "t_ms", "model", "decision", "gpu", "evict", "reason"]


def test_run_scenario_final_state(capsys):
    main(["run-scenario", "--final-state", str(ORACLE / "evict_list_duplicate_ids.json")])
    last = json.loads(capsys.readouterr().out.splitlines()[-1])
    want = json.loads((ORACLE / "evict_list_duplicate_ids.final_state.json").read_text())
    assert last["gpus"] == want["gpus"]


def test_bad_scenario_exits_1_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"config": {}, "gpus": [], "models": [], "events": []}')
    assert main(["run-scenario", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.json" in err and "Traceback" not in err


def test_replay_log_needs_config_exit_2(tmp_path, capsys):
    log = tmp_path / "x.jsonl"
    log.write_text("")
    assert main(["replay", str(log)]) == 2
    assert "--config" in capsys.readouterr().err


def test_replay_bad_size_exit_2(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[models]]\nid = "a"\nvram_required = "1GB"\n')
    log = tmp_path / "x.jsonl"
    log.write_text("")
    assert main(["replay", str(log), "--config", str(cfg), "--gpu", "24 gigs"]) == 2
    err = capsys.readouterr().err
    assert "gpu 0 memory" in err and "gigs" in err
