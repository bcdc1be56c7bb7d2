"""Which reader a path needs, and the CLI's replay over each kind of input."""

import json

import pytest

from concerto_lab.io.inputs import InputError, detect_format, read_requests
from concerto_lab.model.trace import Trace
from concerto_lab.present.cli import main

from conftest import TESTS

LOG = TESTS / "fixtures" / "production" / "concerto.log.jsonl"
CONFIG = TESTS / "fixtures" / "production" / "concerto.toml"


def test_detects_a_concerto_log_by_its_first_json_line():
    assert detect_format(LOG) == "concerto"


def test_trace_parquet_needs_no_column_names(tmp_path):
    t = Trace.from_columns([5, 1, 1], ["b", "a", "c"])
    t.to_parquet(tmp_path / "t.parquet")
    assert detect_format(tmp_path / "t.parquet") == "trace"
    back = read_requests(tmp_path / "t.parquet")
    assert back.t_ms.tolist() == [1, 1, 5]
    assert [back.names[c] for c in back.model] == ["a", "c", "b"]  # stable: file order kept


def test_table_without_column_names_is_a_clear_error(tmp_path):
    p = tmp_path / "req.csv"
    p.write_text("ts,model\n2024-12-03T00:00:00Z,a\n")
    with pytest.raises(InputError, match="req.csv.*--time-col and --model-col"):
        read_requests(p)
    t = read_requests(p, time_col="ts", model_col="model")
    assert t.t_ms.tolist() == [1733184000000]


def test_cli_replays_the_fixture_log_with_its_gpus(capsys):
    rc = main(["replay", str(LOG), "--config", str(CONFIG), "--gpu", "24GiB", "--gpu", "24GiB",
               "--gpu", "48GiB", "--json"])  # fmt: skip
    assert rc == 0
    s = json.loads(capsys.readouterr().out)
    assert s["requests"] == 7483
    assert s["routed"] + s["loads"] + s["rejected"] == 7483
    assert s["rejected_unknown"] == 5  # mistral-7b-instruct-v0.2 (2) and qwen2-7b-instruct (3)
    assert s["lines_read"] == 13229


def test_cli_csv_replay_and_parquet_out(tmp_path, capsys):
    import polars as pl

    cfg = tmp_path / "c.toml"
    cfg.write_text('[[models]]\nid = "a"\nvram_required = "10GB"\n'
                   '[[models]]\nid = "b"\nvram_required = "10GB"\n')  # fmt: skip
    csv = tmp_path / "r.csv"
    csv.write_text("when,m\n1700000000,a\n1700000001,b\n1700000002,a\n1700000003,zz\n")
    out = tmp_path / "d.parquet"
    rc = main(["replay", str(csv), "--config", str(cfg), "--gpu", "12GB", "--time-col", "when",
               "--model-col", "m", "--time-unit", "s", "--out", str(out), "--json"])  # fmt: skip
    assert rc == 0
    d = pl.read_parquet(out)
    assert d["decision"].cast(pl.String).to_list() == ["load", "load", "load", "reject"]
    assert d["evict"].to_list() == [[], ["a"], ["b"], []]
    assert d["reason"].to_list()[-1] == "Model 'zz' not found in registry"


def test_rotated_and_zstd_logs_are_recognised_by_content(tmp_path, capsys):
    import gzip
    import shutil

    import zstandard

    lines = LOG.read_text().splitlines(keepends=True)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "concerto.log.1").write_text("".join(lines[:6000]))  # older half, rotated name
    with gzip.open(logs / "concerto.log.2.gz", "wt") as f:  # even older: empty but valid
        f.write("")
    (logs / "concerto.log").write_text("".join(lines[6000:]))
    assert detect_format(logs / "concerto.log.1") == "concerto"
    zst = tmp_path / "whole.log.zst"
    with open(LOG, "rb") as src, open(zst, "wb") as dst:
        zstandard.ZstdCompressor().copy_stream(src, dst)
    assert detect_format(zst) == "concerto"
    assert len(read_requests(zst)) == 7483
    shutil.rmtree(tmp_path / "unused", ignore_errors=True)
    assert main(["replay", str(logs), "--config", str(CONFIG), "--gpu", "48GiB", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["requests"] == 7483


def test_input_without_requests_is_a_data_error(tmp_path, capsys):
    junk = tmp_path / "junk.log"
    junk.write_text("panic: not json\n\n{\"timestamp\": \"2024-12-03T00:00:00Z\", \"level\": \"INFO\", "
                    "\"fields\": {\"message\": \"concerto ready to serve\"}}\n")
    assert main(["replay", str(junk), "--config", str(CONFIG), "--gpu", "24GiB"]) == 1
    err = capsys.readouterr().err
    assert "no usable request" in err and "line 1" in err and "Traceback" not in err


def test_missing_log_and_unknown_fix_exit_2(tmp_path, capsys):
    assert main(["replay", str(tmp_path / "nope*.log"), "--config", str(CONFIG),
                 "--gpu", "24GiB"]) == 2  # fmt: skip
    assert "no file matches" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["replay", "--fix", "nonsense"])
    assert e.value.code == 2
