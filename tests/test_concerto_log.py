"""Concerto JSON-log intake: cases B15-B18, a malformed-log corpus (plain, gzip, zstd), rotated
files, int64 time boundaries, the production fixture, and the scanner held to Python's json."""

import gzip
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import concerto_lab.io.concerto_log as cl
from concerto_lab.io import json_scan as js
from concerto_lab.io.concerto_log import LogError, read_concerto_log, read_log_events
from concerto_lab.io.log_files import expand_log_paths

from conftest import read_jsonl

TESTS = Path(__file__).parent
CASES = TESTS / "cases"
PROD = TESTS / "fixtures" / "production"


def rows(trace):
    names = np.array(trace.names, dtype=object)
    return [[int(t), str(m)] for t, m in zip(trace.t_ms, names[trace.model])]


def skipped_lines(report):
    return [n for n, _ in report.skipped]


# --- cases B15-B18 -----------------------------------------------------------------------------
def test_b15_zero_to_nine_fraction_digits():
    tr = read_concerto_log(CASES / "b15_fraction_digits.log")
    assert rows(tr) == [
        [1741064767000, "m0"], [1741064768100, "m1"], [1741064769120, "m2"],
        [1741064770123, "m3"], [1741064771123, "m4"], [1741064772123, "m5"],
        [1741064773123, "m6"], [1741064774123, "m7"], [1741064775000, "m8"],
        [1741064776990, "m9"],
    ]  # fmt: skip
    assert tr.line.tolist() == list(range(1, 11))
    assert tr.report.skipped == [] and tr.report.ignored == 0
    assert (tr.report.lines_read, tr.report.rows_used) == (10, 10)
    assert tr.t_ms.dtype == np.int64


def test_b16_broken_and_plain_text_lines():
    tr = read_concerto_log(CASES / "b16_broken_lines.log")
    assert rows(tr) == [[1741064767000, "alpha"], [1741064769000, "delta"],
                        [1741064770000, "epsilon"]]  # fmt: skip
    assert tr.line.tolist() == [1, 10, 11]
    rep = tr.report
    assert skipped_lines(rep) == [2, 3, 4, 5, 7, 8]
    assert rep.ignored_lines.tolist() == [6, 9] and rep.ignored == 2
    assert (rep.lines_read, rep.rows_used) == (11, 3)
    why = dict(rep.skipped)
    assert why[2] == "malformed JSON: extra text after the object at column 87"
    assert why[7] == "malformed JSON: the line ends inside a value (truncated line?)"
    assert why[8] == "valid JSON but not an object (an array)"
    assert all(why[n].startswith("malformed JSON") for n in (3, 4, 5))


def test_b16_strict_fails_at_the_first_request_like_line():
    # line 2 (a span line) and 3-5 (panic text) are not request-like; line 7 is a cut-off object
    with pytest.raises(LogError, match=r"b16_broken_lines\.log: line 7: malformed JSON"):
        read_concerto_log(CASES / "b16_broken_lines.log", strict=True)


def test_b17_fields_nested_flattened_spans_and_duplicates():
    tr = read_concerto_log(CASES / "b17_field_layouts.log")
    assert rows(tr) == [[1741064767000, "alpha"], [1741064768000, "beta"],
                        [1741064769000, "gamma"], [1741064772000, "zeta"]]  # fmt: skip
    assert tr.report.skipped == [(5, "missing timestamp (request line)")]
    assert tr.report.ignored_lines.tolist() == [4]
    with pytest.raises(LogError, match="line 5: missing timestamp"):
        read_concerto_log(CASES / "b17_field_layouts.log", strict=True)


def test_b17_events_table_never_reads_span_fields():
    ev, rep = read_log_events(CASES / "b17_field_layouts.log")
    assert ev["line"].to_list() == [1, 2, 3, 4, 6]
    assert ev["model"].to_list() == ["alpha", "beta", "gamma", "delta", "zeta"]
    assert ev.filter(ev["line"] == 4).row(0, named=True) | {"file": None} == {
        "file": None, "line": 4, "t_ms": 1741064770000, "level": "WARN",
        "message": "routing rejected", "model": "delta", "model_id": None, "gpu_id": None,
        "victim": None, "reason": "Model 'delta' not found in registry",
        "target": "concerto_api::orchestrator", "pid": None, "port": None,
    }  # fmt: skip
    assert rep.skipped == [(5, "missing timestamp (request line)")]
    assert rep.rows_used == 5 and rep.used_what == "events"


def test_b18_offsets_converted_to_utc_and_sorted():
    tr = read_concerto_log(CASES / "b18_utc_offsets.log")
    assert rows(tr) == [[1741057567000, "b"], [1741057567500, "a"], [1741057568000, "c"],
                        [1741503599000, "d"], [1741503600000, "e"]]  # fmt: skip
    assert tr.line.tolist() == [2, 1, 3, 4, 5]
    assert tr.t_ms[4] - tr.t_ms[3] == 1000  # across the US DST jump


# --- a malformed-log corpus covering every item of issue 5, item 1 ----------------------------
REQ = ('{{"timestamp":"{ts}","level":"INFO","fields":{{"message":"incoming chat completion",'
       '"model":"{m}","stream":true}},"target":"concerto_api::routes::chat"}}')  # fmt: skip
T0 = 1741064767000  # 2025-03-04T05:06:07Z

# (line bytes, expected): ("used", t_ms, model) | ("skipped", reason prefix) | ("ignored",)
CORPUS = [
    (b"\xef\xbb\xbf" + REQ.format(ts="2025-03-04T05:06:07.123456Z", m="alpha").encode(),
     ("used", T0 + 123, "alpha")),
    (b"", ("ignored",)),
    (REQ.format(ts="2025-03-04T05:06:08Z", m="beta").encode() + b"\r", ("used", T0 + 1000, "beta")),
    (b"  \t\r", ("ignored",)),
    (b"thread 'tokio-runtime-worker' panicked at crates/concerto-api/src/main.rs:1:1:",
     ("skipped", "malformed JSON: unexpected character at column 2")),
    (b"stack backtrace:", ("skipped", "malformed JSON: unexpected character at column 1")),
    # flatten_event layout
    (b'{"timestamp":"2025-03-04T05:06:09.5Z","level":"INFO","message":"incoming chat completion",'
     b'"model":"gamma","stream":false,"target":"concerto_api::routes::chat"}',
     ("used", T0 + 2500, "gamma")),
    # spans carry keys named like event fields: never read
    (b'{"timestamp":"2025-03-04T05:06:10.000000001Z","fields":{"message":"incoming chat '
     b'completion","model":"delta"},"span":{"model":"SPAN","name":"request"},'
     b'"spans":[{"model":"SPAN","message":"x"}]}', ("used", T0 + 3000, "delta")),
    (b'{"span":{"message":"incoming chat completion","model":"SPAN"},"timestamp":'
     b'"2025-03-04T05:06:11Z","fields":{"message":"launching backend","model":"delta",'
     b'"gpu_id":"gpu:0"},"target":"concerto_api::orchestrator"}', ("ignored",)),
    (b'{"timestamp":"2025-03-04T05:06:12Z","message":"incoming chat completion",'
     b'"span":{"model":"SPAN"},"spans":[]}', ("skipped", "missing model (request line)")),
    # duplicate keys: the last one wins
    (b'{"timestamp":"2025-03-04T05:06:13Z","fields":{"message":"incoming chat completion",'
     b'"model":"old","model":"eps"}}', ("used", T0 + 6000, "eps")),
    (b'{"timestamp":"1999-01-01T00:00:00Z","timestamp":"2025-03-04T05:06:14Z","fields":'
     b'{"message":"incoming chat completion","model":"zeta"}}', ("used", T0 + 7000, "zeta")),
    (b'{"timestamp":"2025-03-04T05:06:14Z","fields":{"message":"incoming chat completion",'
     b'"model":"lost"},"fields":{"message":"backend ready","model_id":"x"}}', ("ignored",)),
    # numeric offsets, a DST change in local time, lowercase t/z
    (REQ.format(ts="2025-03-04T10:36:15+05:30", m="eta").encode(), ("used", T0 + 8000, "eta")),
    (REQ.format(ts="2025-03-09T01:59:59.999-05:00", m="dst1").encode(),
     ("used", 1741503599999, "dst1")),
    (REQ.format(ts="2025-03-09T03:00:00.000-04:00", m="dst2").encode(),
     ("used", 1741503600000, "dst2")),
    (REQ.format(ts="2025-03-04t05:06:21z", m="lower").encode(), ("used", T0 + 14000, "lower")),
    # out of order, and two requests in the same millisecond (file order kept)
    (REQ.format(ts="2025-03-04T05:06:06.999Z", m="early").encode(), ("used", T0 - 1, "early")),
    (REQ.format(ts="2025-03-04T05:06:20.1Z", m="tie1").encode(), ("used", T0 + 13100, "tie1")),
    (REQ.format(ts="2025-03-04T05:06:20.100999Z", m="tie2").encode(),
     ("used", T0 + 13100, "tie2")),
    # valid JSON that is not an object
    (b'"incoming chat completion"', ("skipped", "valid JSON but not an object (a string)")),
    (b"42", ("skipped", "valid JSON but not an object (a number)")),
    (b"null", ("skipped", "valid JSON but not an object (true/false/null)")),
    # timestamps: missing, null, unparseable
    (b'{"level":"INFO","fields":{"message":"incoming chat completion","model":"m"}}',
     ("skipped", "missing timestamp (request line)")),
    (b'{"timestamp":null,"fields":{"message":"incoming chat completion","model":"m"}}',
     ("skipped", "missing timestamp (request line)")),
    (REQ.format(ts="2025-13-04T05:06:07Z", m="m").encode(),
     ("skipped", '''unparseable timestamp "2025-13-04T05:06:07Z" (a field is out of range)''')),
    (REQ.format(ts="2025-02-29T00:00:00Z", m="m").encode(),
     ("skipped", '''unparseable timestamp "2025-02-29T00:00:00Z" (a field is out of range)''')),
    (REQ.format(ts="2025-03-04 05:06:07", m="m").encode(),
     ("skipped", '''unparseable timestamp "2025-03-04 05:06:07" (no UTC offset)''')),
    (REQ.format(ts="2025-03-04T05:06:07.Z", m="m").encode(),
     ("skipped", '''unparseable timestamp "2025-03-04T05:06:07.Z" (request line)''')),
    (b'{"timestamp":1741064767000,"fields":{"message":"incoming chat completion","model":"m"}}',
     ("skipped", "unparseable timestamp 1741064767000 (a JSON number, expected an RFC 3339")),
    # model missing or not a string
    (b'{"timestamp":"2025-03-04T05:06:22Z","fields":{"message":"incoming chat completion",'
     b'"model":7}}', ("skipped", "missing model (request line; model is a JSON number")),
    (b'{"timestamp":"2025-03-04T05:06:22Z","fields":{"message":"incoming chat completion",'
     b'"model":null}}', ("skipped", "missing model (request line; model is a JSON null")),
    # escapes decode; unicode ids; "fields" that is not an object has no event fields
    (b'{"timestamp":"2025-03-04T05:06:23Z","fields":{"message":"incoming chat completio\\u006e",'
     b'"model":"org\\/m\\u00e8"}}', ("used", T0 + 16000, "org/m\u00e8")),
    (REQ.format(ts="2025-03-04T05:06:24Z", m="mod\u00e8le-\u00fc").encode(),
     ("used", T0 + 17000, "mod\u00e8le-\u00fc")),
    (b'{"timestamp":"2025-03-04T05:06:25Z","fields":"incoming chat completion","model":"x"}',
     ("ignored",)),
    # other events: ignored (even without a timestamp)
    (b'{"timestamp":"2025-03-04T05:06:26Z","level":"WARN","fields":{"message":"routing rejected",'
     b'"model":"gamma","reason":"No GPU can fit model"},"target":"concerto_api::orchestrator"}',
     ("ignored",)),
    (b'{"level":"INFO","fields":{"message":"received SIGTERM"},"target":"concerto::signals"}',
     ("ignored",)),
    # broken JSON of several kinds
    (b'{"timestamp":"2025-03-04T05:06:27Z","fields":{},"message":"new"},"target":"x"}',
     ("skipped", "malformed JSON: extra text after the object at column 65")),
    (b'{"timestamp":"2025-03-04T05:06:27Z","fields":{"message":"a\tb"}}',
     ("skipped", "malformed JSON: raw control character inside a string at column 59")),
    (b'{"timestamp":"2025-03-04T05:06:27Z","fields":{"message":"a\\qb"}}',
     ("skipped", "malformed JSON: invalid escape in a string at column 60")),
    (b'{"timestamp":"2025-03-04T05:06:27Z",}', ("skipped", "malformed JSON: unexpected character")),
    # the last line is cut off (no newline)
    (b'{"timestamp":"2025-03-04T05:06:30Z","fields":{"message":"incoming chat completion","mod',
     ("skipped", "malformed JSON: the line ends inside a value (truncated line?)")),
]  # fmt: skip


def corpus_bytes() -> bytes:
    return b"\n".join(line for line, _ in CORPUS)  # no newline after the cut-off last line


def expected_account():
    used, skipped, ignored = [], [], []
    for n, (_, exp) in enumerate(CORPUS, 1):
        if exp[0] == "used":
            used.append((exp[1], exp[2], n))
        elif exp[0] == "skipped":
            skipped.append((n, exp[1]))
        else:
            ignored.append(n)
    used.sort(key=lambda u: u[0])  # stable: ties keep file order
    return used, skipped, ignored


def assert_corpus_account(tr):
    used, skipped, ignored = expected_account()
    names = np.array(tr.names, dtype=object)
    assert list(zip(tr.t_ms.tolist(), names[tr.model].tolist(), tr.line.tolist())) == used
    rep = tr.report
    assert [n for n, _ in rep.skipped] == [n for n, _ in skipped]
    for (n, why), (_, want) in zip(rep.skipped, skipped):
        assert why.startswith(want), (n, why, want)
    assert rep.ignored_lines.tolist() == ignored
    assert (rep.lines_read, rep.rows_used, rep.ignored) == (len(CORPUS), len(used), len(ignored))
    assert rep.lines_read == rep.rows_used + len(rep.skipped) + rep.ignored


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.log"
    path.write_bytes(corpus_bytes())
    return path


def test_corpus_exact_account(corpus):
    tr = read_concerto_log(corpus)
    assert_corpus_account(tr)
    assert len(CORPUS) == 42 and len(tr) == 15 and len(tr.report.skipped) == 20


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_corpus_compressed_gives_the_same(corpus, tmp_path, kind):
    data = corpus_bytes()
    if kind == "gzip":
        path = tmp_path / "corpus.log.gz"
        path.write_bytes(gzip.compress(data))
    else:
        path = tmp_path / "corpus.log.zst"
        path.write_bytes(zstandard.ZstdCompressor().compress(data))
    tr, plain = read_concerto_log(path), read_concerto_log(corpus)
    assert_corpus_account(tr)
    assert tr.report.skipped == plain.report.skipped
    ev, rep = read_log_events(path)
    ev_plain, rep_plain = read_log_events(corpus)
    assert ev.drop("file").equals(ev_plain.drop("file")) and rep.skipped == rep_plain.skipped


@pytest.mark.parametrize("batch_bytes", [1, 64, 700])
def test_corpus_in_tiny_batches_and_split_scans(corpus, monkeypatch, batch_bytes):
    monkeypatch.setattr(cl, "_SPLIT_MIN_BYTES", 0)  # also scan each batch on several threads
    tr = read_concerto_log(corpus, batch_bytes=batch_bytes)
    assert_corpus_account(tr)


def test_corpus_events_table(corpus):
    ev, rep = read_log_events(corpus)
    # events need a timestamp: the SIGTERM line without one is skipped here
    assert rep.rows_used == ev.height == 15 + 4
    assert ev.filter(ev["line"] == 9).select("message", "model", "gpu_id").row(0) == (
        "launching backend", "delta", "gpu:0")  # fmt: skip
    assert ev.filter(ev["line"] == 13)["message"].to_list() == ["backend ready"]
    assert ev.filter(ev["line"] == 13)["model"].to_list() == [None]
    assert ev.filter(ev["line"] == 35)["message"].to_list() == [None]
    assert (37, "missing timestamp (event line)") in rep.skipped
    assert ev["t_ms"].is_sorted()
    only, only_rep = read_log_events(corpus, messages=["routing rejected"])
    assert only["line"].to_list() == [36]
    assert only_rep.ignored == 2 + 19 - 1 and only_rep.skipped == rep.skipped  # blank + filtered


def test_strict_names_file_and_line(corpus):
    with pytest.raises(LogError, match=r"corpus\.log: line 10: missing model"):
        read_concerto_log(corpus, strict=True)


def test_truncated_gzip_is_reported_not_fatal(tmp_path):
    lines = [REQ.format(ts=f"2025-03-04T05:{k // 60:02d}:{k % 60:02d}Z", m=f"m{k % 7}")
             for k in range(3000)]  # fmt: skip
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    path = tmp_path / "cut.log.gz"
    path.write_bytes(data[: len(data) // 2])
    tr = read_concerto_log(path)
    rep = tr.report
    assert 0 < len(tr) < 3000
    assert rep.skipped[-1][1].startswith("compressed stream ends early or is corrupt")
    # every line before the cut is accounted for: used, or the partial last one skipped
    assert rep.lines_read == len(tr) + len(rep.skipped) - 1
    assert tr.line.tolist() == list(range(1, len(tr) + 1))
    with pytest.raises(LogError, match=r"cut\.log\.gz: line \d+: (malformed JSON|compressed)"):
        read_concerto_log(path, strict=True)


def test_line_longer_than_a_batch(tmp_path):
    long_model = "m" * 5000
    path = tmp_path / "long.log"
    path.write_text(REQ.format(ts="2025-03-04T05:06:07Z", m=long_model) + "\n"
                    + REQ.format(ts="2025-03-04T05:06:08Z", m="short") + "\n")  # fmt: skip
    tr = read_concerto_log(path, batch_bytes=256)
    assert rows(tr) == [[T0, long_model], [T0 + 1000, "short"]]


def test_empty_file(tmp_path):
    path = tmp_path / "empty.log"
    path.write_bytes(b"")
    tr = read_concerto_log(path)
    assert len(tr) == 0 and tr.report.lines_read == 0 and tr.names == ()
    ev, rep = read_log_events(path)
    assert ev.height == 0 and ev.columns[:3] == ["file", "line", "t_ms"]


# --- rotated files -----------------------------------------------------------------------------
def _write_rotated(folder: Path) -> None:
    folder.mkdir()
    (folder / "concerto.log.2").write_text(
        REQ.format(ts="2025-03-04T05:00:00Z", m="a") + "\nnot json\n"
        + REQ.format(ts="2025-03-04T05:00:05Z", m="same-ms-old") + "\n")  # fmt: skip
    (folder / "concerto.log.1.gz").write_bytes(gzip.compress(
        (REQ.format(ts="2025-03-04T05:00:05Z", m="same-ms-mid") + "\n\n"
         + REQ.format(ts="2025-03-04T05:01:00Z", m="b") + "\n").encode()))  # fmt: skip
    (folder / "concerto.log").write_text(
        REQ.format(ts="2025-03-04T05:00:05Z", m="same-ms-new") + "\n"
        + REQ.format(ts="2025-03-04T05:02:00Z", m="c") + "\n{\"trunc")  # fmt: skip


@pytest.mark.parametrize("how", ["dir", "glob", "list"])
def test_rotated_files_read_as_one_log(tmp_path, how):
    folder = tmp_path / "logs"
    _write_rotated(folder)
    arg = {
        "dir": folder,
        "glob": str(folder / "concerto.log*"),
        "list": [folder / "concerto.log", folder / "concerto.log.2", folder / "concerto.log.1.gz"],
    }[how]
    assert [p.name for p in expand_log_paths(arg)] == ["concerto.log.2", "concerto.log.1.gz",
                                                       "concerto.log"]  # fmt: skip
    tr = read_concerto_log(arg)
    assert [m for _, m in rows(tr)] == ["a", "same-ms-old", "same-ms-mid", "same-ms-new", "b", "c"]
    assert tr.line.tolist() == [1, 3, 1, 1, 3, 2]
    rep = tr.report
    assert rep.skipped == [(2, "concerto.log.2: malformed JSON: unexpected character at column 2"),
                           (3, "concerto.log: malformed JSON: the line ends inside a value "
                               "(truncated line?)")]  # fmt: skip
    assert (rep.lines_read, rep.rows_used, rep.ignored) == (9, 6, 1)
    assert [f.source.rsplit("/", 1)[-1] for f in rep.files] == ["concerto.log.2",
                                                                "concerto.log.1.gz", "concerto.log"]
    assert rep.files[1].ignored_lines.tolist() == [2]
    ev, _ = read_log_events(arg)
    assert [Path(f).name for f in ev["file"].to_list()][:4] == [
        "concerto.log.2", "concerto.log.2", "concerto.log.1.gz", "concerto.log"]


def test_rotation_order_numbered_and_dated(tmp_path):
    names = ["x.log", "x.log.10", "x.log.2.gz", "x.log.1", "x.log.2024-12-03", "x.log.2024-12-01"]
    paths = [tmp_path / n for n in names]
    for p in paths:
        p.write_bytes(b"")
    assert [p.name for p in expand_log_paths(paths)] == [
        "x.log.10", "x.log.2.gz", "x.log.1", "x.log.2024-12-01", "x.log.2024-12-03", "x.log"]


# --- int64 times ---------------------------------------------------------------------------------
@pytest.mark.parametrize("ts, want", [
    ("2038-01-19T03:14:08Z", 2**31 * 1000),                      # one second past 2**31 s
    ("2106-02-07T06:28:16Z", 2**32 * 1000),                      # past 2**32 s
    ("9999-12-31T23:59:59.999999999Z", 253402300799999),
    ("0001-01-01T00:00:00Z", -62135596800000),
    ("0001-01-01T00:00:00+01:00", -62135600400000),
    ("1969-12-31T23:59:59.5Z", -500),
    ("1970-01-01T00:00:00.000999Z", 0),
    ("2000-02-29T23:59:60Z", 951868800000),                      # a leap second: next second
])  # fmt: skip
def test_int64_time_boundaries(tmp_path, ts, want):
    path = tmp_path / "t.log"
    path.write_text(REQ.format(ts=ts, m="m") + "\n")
    tr = read_concerto_log(path)
    assert tr.t_ms.dtype == np.int64 and tr.t_ms.tolist() == [want]
    ev, _ = read_log_events(path)
    assert ev["t_ms"].to_list() == [want]


FRACTIONS = st.integers(0, 9).flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n))


@settings(max_examples=300, deadline=None)
@given(
    dt=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    frac=FRACTIONS,
    offset_min=st.integers(-23 * 60 - 59, 23 * 60 + 59),
    sep=st.sampled_from("Tt "),
)
def test_rfc3339_matches_python_datetime(dt, frac, offset_min, sep):
    dt = dt.replace(microsecond=0)
    zone = "Z" if offset_min == 0 else (
        f"{'+' if offset_min > 0 else '-'}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}")
    text = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}{sep}{dt.hour:02d}:{dt.minute:02d}:" \
           f"{dt.second:02d}" + (f".{frac}" if frac else "")  # fmt: skip
    text = (text + zone).encode()
    aware = dt.replace(tzinfo=timezone(timedelta(minutes=offset_min)))
    whole = (aware - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(milliseconds=1)
    want = whole + int((frac + "000")[:3])
    buf = np.frombuffer(b'"' + text + b'"', dtype=np.uint8)
    one = np.zeros(1, np.int64)
    t, status = js.parse_log_times(buf, one, one + len(buf), np.full(1, js.K_STR, np.int8))
    assert status[0] == js.T_OK and t[0] == want


# --- the production fixture --------------------------------------------------------------------
def test_production_log_requests_exactly():
    tr = read_concerto_log(PROD / "concerto.log.jsonl")
    expected = read_jsonl(PROD / "decisions.expected.jsonl")
    assert len(tr) == 7483 and len(tr.names) == 68
    names = np.array(tr.names, dtype=object)
    assert tr.t_ms.tolist() == [e["t_ms"] for e in expected]
    assert names[tr.model].tolist() == [e["model"] for e in expected]
    assert tr.line.tolist() == [e["log_line"] for e in expected]
    rep = tr.report
    assert skipped_lines(rep) == [2184, 2185, 2186, 4453, 4454, 6628, 6629]
    assert (rep.lines_read, rep.rows_used, rep.ignored) == (13229, 7483, 5739)
    assert tr.t_ms[0] == 1733184006854  # 2024-12-03T00:00:06.854421Z, sub-ms truncated


def test_production_log_events():
    ev, rep = read_log_events(PROD / "concerto.log.jsonl")
    assert ev.height == 13222 and skipped_lines(rep) == [2184, 2185, 2186, 4453, 4454, 6628, 6629]
    counts = dict(ev["message"].value_counts().iter_rows())
    assert counts["incoming chat completion"] == 7483
    assert counts["launching backend"] == 947 and counts["evicting backend"] == 921
    assert counts["routing rejected"] == 28 and counts["backend unhealthy; dropping"] == 4
    assert counts["concerto ready to serve"] == 2 and counts["graceful shutdown complete"] == 1
    crashes = ev.filter(ev["message"] == "backend unhealthy; dropping")
    assert crashes["line"].to_list() == [2187, 6254, 9869, 11142]
    assert crashes["model_id"].to_list() == ["qwen2.5-3b-instruct", "mistral-7b-instruct-v0.3-awq",
                                             "qwen2.5-7b-instruct", "gemma-2-2b-it"]  # fmt: skip
    assert crashes["pid"].to_list() == [13731, 126023, 28, 70265]
    assert crashes["port"].to_list() == [8105, 8107, 8100, 8111]
    launch = ev.filter(ev["message"] == "launching backend").row(0, named=True)
    assert (launch["line"], launch["model"], launch["gpu_id"]) == (5, "qwen2.5-7b-instruct",
                                                                   "gpu:2")  # fmt: skip
    assert ev["victim"].drop_nulls().len() == 921


# --- the scanner against Python's json ---------------------------------------------------------
_KEYS = ("timestamp", "fields", "message", "model")
_ROLES = np.array([js.ROLE_TOP, js.ROLE_FIELDS, js.ROLE_EVENT, js.ROLE_EVENT], dtype=np.int8)
_KB, _KO, _KL = js.encode_keys(_KEYS)


def _reject_constant(name):
    raise ValueError(name)


def python_view(line: bytes):
    """What Python's json makes of one line, in the reader's terms."""
    text = line[3:] if line.startswith(b"\xef\xbb\xbf") else line
    if text.strip(b" \t\r") == b"":
        return ("blank",)
    try:
        obj = json.loads(text.decode("utf-8", "replace"), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ("malformed",)
    if not isinstance(obj, dict):
        return ("not-object", type(obj).__name__)
    ev = obj["fields"] if "fields" in obj else obj
    ev = ev if isinstance(ev, dict) else {}
    missing = object()
    return ("object", obj.get("timestamp", missing), ev.get("message", missing),
            ev.get("model", missing), missing)  # fmt: skip


def scanner_view(line: bytes):
    buf = np.frombuffer(line + b"\n", dtype=np.uint8)
    ls, le, status, err, col, vs, ve, vk = js.scan_lines(buf, _KB, _KO, _KL, _ROLES)
    assert len(status) == 1
    s = int(status[0])
    if s == js.L_BLANK:
        return ("blank",)
    if s == js.L_MALFORMED:
        return ("malformed",)
    if s != js.L_OBJECT:
        return ("not-object", {js.L_ARRAY: "list", js.L_STRING: "str"}.get(s, "scalar"))
    vals = []
    for k in (0, 2, 3):
        if vk[k, 0] == js.K_ABSENT:
            vals.append("<absent>")
        else:
            vals.append(json.loads(bytes(buf[vs[k, 0] : ve[k, 0]]).decode("utf-8", "replace")))
    return ("object", *vals)


def same_view(py, ours):
    if py[0] != ours[0]:
        return False
    if py[0] == "not-object":
        kind = py[1] if py[1] in ("list", "str") else "scalar"
        return kind == ours[1]
    if py[0] == "object":
        missing = py[4]
        return all((p is missing and o == "<absent>") or (p is not missing and p == o)
                   for p, o in zip(py[1:4], ours[1:4]))  # fmt: skip
    return True


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
KEYS = st.sampled_from(["timestamp", "fields", "message", "model", "span", "spans", "x", ""])
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(KEYS, inner, max_size=4), max_leaves=12)  # fmt: skip
TOP = st.one_of(st.dictionaries(KEYS, VALUES, max_size=6), VALUES)


@st.composite
def lines(draw):
    value = draw(TOP)
    seps = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : ")]))
    text = json.dumps(value, separators=seps, ensure_ascii=draw(st.booleans()))
    raw = bytearray(text.encode())
    for _ in range(draw(st.integers(0, 2))):  # mutations: cut, insert, delete
        op = draw(st.sampled_from(["cut", "insert", "delete"]))
        at = draw(st.integers(0, len(raw)))
        if op == "cut":
            raw = raw[:at]
        elif op == "insert":
            raw[at:at] = draw(st.sampled_from([b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\",
                                               b"\t", b" ", b"x", b"1", b"-", b"e", b"."]))
        elif raw:
            del raw[min(at, len(raw) - 1)]
    if draw(st.booleans()):
        raw = b" \r" + raw + b" \r"
    return bytes(raw)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=lines())
def test_scanner_agrees_with_python_json(line):
    assert same_view(python_view(line), scanner_view(line)), line
