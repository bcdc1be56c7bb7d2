"""Plain request tables: date-time strings with and without offsets, epoch units, native Parquet
types, NDJSON; bad values are skipped with their row number, never fatal."""

import numpy as np
import polars as pl
import pytest

from concerto_lab.io.request_table import TableError, merge_traces, read_request_table


def rows(trace):
    names = np.array(trace.names, dtype=object)
    return list(zip(trace.t_ms.tolist(), names[trace.model].tolist(), trace.line.tolist()))


def test_csv_datetime_strings(tmp_path):
    path = tmp_path / "req.csv"
    path.write_text(
        "ts,model,other\n"
        "2025-03-04T05:06:07.5+02:00,a,1\n"        # row 1: offset
        "2025-03-04 03:06:07,b,2\n"                # row 2: naive -> UTC
        "2025-03-04T03:06:07.9999999Z,c,3\n"       # row 3: 7 digits, truncated
        ",d,4\n"                                   # row 4: missing time
        "yesterday,e,5\n"                          # row 5: unparseable
        "2025-02-30T00:00:00Z,f,6\n"               # row 6: no such day
        "2025-03-04T03:06:07Z,,7\n"                # row 7: missing model
        "2025-03-04T03:06:06.000-00:00,g,8\n"      # row 8: earlier: sorted first
    )  # fmt: skip
    tr = read_request_table(path, time="ts", model="model")
    assert rows(tr) == [(1741057566000, "g", 9), (1741057567000, "b", 3),
                        (1741057567500, "a", 2), (1741057567999, "c", 4)]  # fmt: skip
    rep = tr.report
    assert rep.skipped == [
        (5, "missing timestamp"),
        (6, "unparseable timestamp 'yesterday' (not a date-time or epoch number)"),
        (7, "unparseable timestamp '2025-02-30T00:00:00Z' (a date or time field is out of range)"),
        (8, "missing model"),
    ]
    assert (rep.lines_read, rep.rows_used) == (8, 4)
    assert rep.notes == ["1 timestamps without a UTC offset taken as UTC"]


def test_naive_times_in_a_zone_with_dst(tmp_path):
    path = tmp_path / "local.csv"
    path.write_text(
        "time,model\n"
        "2025-03-09 01:59:59,a\n"   # EST
        "2025-03-09 02:30:00,b\n"   # does not exist (spring forward)
        "2025-03-09 03:00:00,c\n"   # EDT: 1 s after a
        "2025-11-02 01:30:00,d\n"   # happens twice (fall back)
        "2025-03-09T12:00:00Z,e\n"  # explicit zone wins over tz=
    )  # fmt: skip
    tr = read_request_table(path, time="time", model="model", tz="America/New_York")
    assert rows(tr) == [(1741503599000, "a", 2), (1741503600000, "c", 4),
                        (1741521600000, "e", 6)]  # fmt: skip
    assert [n for n, _ in tr.report.skipped] == [3, 5]
    assert "DST" in tr.report.skipped[0][1]


@pytest.mark.parametrize("unit, values, want", [
    ("s", ["1700000000", "1700000000.9999", "-1.5"], [-1500, 1700000000000, 1700000000999]),
    ("ms", ["1700000000123", "1.7e12"], [1700000000000, 1700000000123]),
    ("us", ["1700000000123456", "-1"], [-1, 1700000000123]),
    ("ns", ["1700000000123456789"], [1700000000123]),
])  # fmt: skip
def test_epoch_units_exact(tmp_path, unit, values, want):
    path = tmp_path / "epoch.csv"
    path.write_text("t,model\n" + "".join(f"{v},m\n" for v in values))
    tr = read_request_table(path, time="t", model="model", unit=unit)
    assert tr.t_ms.tolist() == want and tr.t_ms.dtype == np.int64
    assert not any("guessed" in n for n in tr.report.notes)


def test_epoch_unit_guessed_and_said(tmp_path):
    path = tmp_path / "epoch.csv"
    path.write_text("t,model\n1700000000123,a\n1700000000456,b\nnope,c\n9e30,d\n")
    tr = read_request_table(path, time="t", model="model")
    assert tr.t_ms.tolist() == [1700000000123, 1700000000456]
    assert any("epoch unit guessed from magnitudes: 'ms'" in n for n in tr.report.notes)
    assert [n for n, _ in tr.report.skipped] == [4, 5]  # file lines: the header is line 1
    assert tr.report.skipped[1] == (5, "epoch number out of int64 milliseconds range")


def test_parquet_native_types(tmp_path):
    from datetime import date, datetime, timezone

    base = datetime(2040, 1, 1, tzinfo=timezone.utc)  # beyond 2**31 s
    df = pl.DataFrame({
        "aware": pl.Series([base, None, base], dtype=pl.Datetime("us", "Europe/Paris")),
        "naive": pl.Series([datetime(2040, 1, 1), datetime(2040, 1, 1, 0, 0, 1), None]),
        "day": pl.Series([date(1, 1, 1), date(9999, 12, 31), None]),
        "epoch_s": pl.Series([2208988800, None, -1], dtype=pl.Int64),
        "epoch_f": pl.Series([2208988800.25, float("nan"), 1.0]),
        "model": pl.Series([1, 2, None], dtype=pl.Int64),
        "name": ["x", "y", "z"],
    })  # fmt: skip
    path = tmp_path / "t.parquet"
    df.write_parquet(path)
    ms_2040 = 2208988800000
    tr = read_request_table(path, time="aware", model="name")
    assert rows(tr) == [(ms_2040, "x", 1), (ms_2040, "z", 3)]
    tr = read_request_table(path, time="naive", model="name")
    assert tr.t_ms.tolist() == [ms_2040, ms_2040 + 1000]
    tr = read_request_table(path, time="day", model="name")
    assert tr.t_ms.tolist() == [-62135596800000, 253402214400000]
    tr = read_request_table(path, time="epoch_s", model="name", unit="s")
    assert tr.t_ms.tolist() == [-1000, ms_2040] and tr.report.skipped == [(2, "missing timestamp")]
    tr = read_request_table(path, time="epoch_f", model="name", unit="s")
    assert tr.t_ms.tolist() == [1000, ms_2040 + 250]
    assert tr.report.skipped == [(2, "timestamp is NaN or infinite")]
    tr = read_request_table(path, time="epoch_s", model="model", unit="s")
    assert rows(tr) == [(ms_2040, "1", 1)] and (3, "missing model") in tr.report.skipped


def test_ndjson_with_bad_lines(tmp_path):
    path = tmp_path / "req.ndjson"
    path.write_text(
        '{"t": "2025-03-04T05:06:07Z", "m": "a"}\n'
        "\n"
        "garbage\n"
        '{"t": 1741064768000, "m": "b"}\n'
        '{"t": "2025-03-04T05:06:09+01:00", "m": 3}\n'
        '{"m": "c"}\n'
        '{"t": "2025-03-04T05:06:10Z"}\n'
        '{"t": true, "m": "d"}\n'
        '{"t": "2025-03-04T05:06:11Z", "m": "e"'
    )  # fmt: skip
    tr = read_request_table(path, time="t", model="m", unit="ms")
    assert rows(tr) == [(1741061169000, "3", 5), (1741064767000, "a", 1),
                        (1741064768000, "b", 4)]  # fmt: skip
    assert tr.report.skipped == [(3, "malformed JSON"), (6, "missing timestamp"),
                                 (7, "missing model"),
                                 (8, "unparseable timestamp (not a string or number)"),
                                 (9, "malformed JSON")]  # fmt: skip
    assert tr.report.ignored_lines.tolist() == [2]
    assert tr.report.lines_read == 9


def test_equal_times_keep_row_order_and_merge(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("t\n2025-01-01T00:00:00Z\n2025-01-01T00:00:01Z\n")
    b.write_text("t\n2025-01-01T00:00:00Z\n2024-12-31T23:59:59Z\n")
    ta = read_request_table(a, time="t", model_name="svc-a")
    tb = read_request_table(b, time="t", model_name="svc-b")
    m = merge_traces([ta, tb])
    assert rows(m) == [(1735689599000, "svc-b", 3), (1735689600000, "svc-a", 2),
                       (1735689600000, "svc-b", 2), (1735689601000, "svc-a", 3)]  # fmt: skip
    assert m.names == ("svc-a", "svc-b") and m.report.lines_read == 4


def test_usage_errors_name_the_file_and_column(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(TableError, match=r"x\.csv: no column 'ts' \(columns: a, b\)"):
        read_request_table(path, time="ts", model="b")
    with pytest.raises(TableError, match="unit 'h'"):
        read_request_table(path, time="a", model="b", unit="h")
    with pytest.raises(TableError, match="no such file"):
        read_request_table(tmp_path / "missing.csv", time="a", model="b")
