"""Sizes as Concerto reads them (bytesize 2.3 ``FromStr``) and prints them (its default
``Display``): every value here is what the Rust side gives, quirks included."""

import json

import pytest
from conftest import ORACLE

from concerto_lab.model.sizes import MAX_SIZE, SizeError, format_size, parse_size

GB, GIB = 10**9, 2**30


@pytest.mark.parametrize(
    "text,expected",
    [
        # B09 parse table
        ("14GB", 14 * GB),
        ("14GiB", 14 * GIB),  # 15,032,385,536: not 14 GB
        ("14 GB", 14 * GB),
        ("14gb", 14 * GB),
        ("14G", 14 * GB),
        ("14Gi", 14 * GIB),
        ("1.5GiB", 1_610_612_736),
        ("14000000000", 14 * GB),
        ("8.2GB", 8_199_999_999),  # float64 8.2 * 1e9 = 8199999999.999999, truncated
        # the same float64 truncation, values checked against the crate (production fixture)
        ("4.1GB", 4_099_999_999),
        ("9.3GiB", 9_985_798_963),
        ("1.9GiB", 2_040_109_465),
        ("0.0001B", 0),
        ("1.9999B", 1),
        # units: case-insensitive (ASCII), with and without "B", decimal and binary
        ("14Gb", 14 * GB),
        ("14gIB", 14 * GIB),
        ("1b", 1),
        ("3k", 3_000),
        ("3KiB", 3 * 1024),
        ("2mb", 2 * 10**6),
        ("2Mi", 2 * 2**20),
        ("2TB", 2 * 10**12),
        ("2ti", 2 * 2**40),
        ("2P", 2 * 10**15),
        ("2PiB", 2 * 2**50),
        ("1EB", 10**18),  # exa units exist since bytesize 2.1
        ("1e", 10**18),
        ("1Ei", 2**60),
        ("2.5EiB", 5 * 2**59),
        # spaces between number and unit: any Unicode White_Space, any amount
        ("14 GiB", 14 * GIB),
        ("14\tGB", 14 * GB),
        ("14   GB", 14 * GB),
        ("14\u3000GB", 14 * GB),
        ("14\xa0GB", 14 * GB),
        # number forms
        ("+14", 14),  # Rust's u64 parser takes a leading '+' ...
        ("007", 7),
        ("1.B", 1),  # ... and its f64 parser takes "1." and ".5"
        (".5KB", 500),
        ("0", 0),
        ("0GB", 0),
        (14, 14),  # TOML integers are bytes
        (0, 0),
        # the 4 EiB ceiling is inclusive
        ("4EiB", MAX_SIZE),
        ("4096PiB", MAX_SIZE),
        (str(2**62), MAX_SIZE),
        (2**62, MAX_SIZE),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "GB",
        "1 000 B",  # digit groups are not numbers
        "14 gigabytes",
        " 14GB",  # leading space: no number at the start
        "14GB ",  # trailing space: the unit is "GB "
        "14 G B",
        "1.2.3GB",
        "..5KB",
        ".",
        "1.",  # a number with no unit and a fraction is not a plain integer
        ".5",
        "1.5",
        "+14GB",  # '+' only passes the integer parser
        "-1",
        "-1GB",
        "1e3",
        "0x10",
        "NaN",
        "inf",
        "14\u212aB",  # Kelvin sign: lowercases to "k" in Unicode, not in ASCII
        "14\x1cGB",  # Python whitespace, not Rust whitespace
        "14XB",
        "14 bytes",
    ],
)
def test_parse_size_refuses(text):
    with pytest.raises(SizeError) as err:
        parse_size(text, what="models[2].vram_required")
    assert str(err.value).startswith("models[2].vram_required: ")
    assert repr(text) in str(err.value)


@pytest.mark.parametrize(
    "value",
    ["4097PiB", "5EiB", "4.7EB", str(2**62 + 1), 2**62 + 1, "18446744073709551615",
     "99999999999999999999B", -1, -(2**40)],
)  # fmt: skip
def test_parse_size_refuses_negative_and_beyond_4_eib(value):
    with pytest.raises(SizeError, match="negative|larger than the supported 4 EiB"):
        parse_size(value)


def test_parse_size_refuses_booleans():
    with pytest.raises(SizeError, match="boolean"):
        parse_size(True)


@pytest.mark.parametrize(
    "b,text",
    [
        # oracle README section 5
        (1024, "1.0 KiB"),
        (1280, "1.2 KiB"),  # the exact tie 1.25 goes to even
        (1792, "1.8 KiB"),
        (1048575, "1024.0 KiB"),  # rounds up to 1024.0 within the unit
        (10**9, "953.7 MiB"),
        (14 * 10**9, "13.0 GiB"),
        (14 * 2**30, "14.0 GiB"),
        (80 * 10**9, "74.5 GiB"),
        (2**40 - 1, "1024.0 GiB"),
        (2**50 - 1, "1.0 PiB"),  # the float64 log rounds up to exactly 5
        (10**18, "888.2 PiB"),
        # boundaries
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (2**40, "1.0 TiB"),
        (2**62, "4.0 EiB"),
    ],
)
def test_format_size(b, text):
    assert format_size(b) == text


def test_format_size_on_every_golden_reason():
    """Every size in the oracle's display scenario prints exactly as in its golden reasons."""
    sc = json.loads((ORACLE / "display_formatting.json").read_text())
    vram = {m["id"]: m["vram_required_bytes"] for m in sc["models"]}
    lines = [json.loads(x) for x in (ORACLE / "display_formatting.expected.jsonl").open()]
    lines = [line for line in lines if line["reason"] and "requires" in line["reason"]]
    assert len(lines) >= 11
    for line in lines:
        size = format_size(vram[line["model"]])
        assert f"(requires {size})" in line["reason"], (line, size)
