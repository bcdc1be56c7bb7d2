"""Byte sizes exactly as Concerto reads and prints them.

Concerto parses config sizes with the Rust crate ``bytesize`` 2.x and prints sizes in reject
reasons with its default (binary, one decimal) formatting. Both have float64 quirks that change
routing decisions (``"8.2GB"`` is 8,199,999,999 bytes), so they are mirrored here, not improved.
"""

from __future__ import annotations

import math
import re

_UNITS = {
    "b": 1,
    "k": 10**3, "kb": 10**3, "ki": 2**10, "kib": 2**10,
    "m": 10**6, "mb": 10**6, "mi": 2**20, "mib": 2**20,
    "g": 10**9, "gb": 10**9, "gi": 2**30, "gib": 2**30,
    "t": 10**12, "tb": 10**12, "ti": 2**40, "tib": 2**40,
    "p": 10**15, "pb": 10**15, "pi": 2**50, "pib": 2**50,
    "e": 10**18, "eb": 10**18, "ei": 2**60, "eib": 2**60,  # bytesize >= 2.1
}  # fmt: skip
#: Rust's ``char::is_whitespace`` (Unicode White_Space); Python's ``str.isspace`` also takes
#: U+001C..U+001F, which bytesize refuses.
_RUST_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

_U64_MAX = 2**64 - 1
#: Largest size the toolkit accepts: sums such as ``vram + headroom`` must stay inside int64.
MAX_SIZE = 2**62

_PLAIN_INT = re.compile(r"\+?[0-9]+\Z")
_NUMBER = re.compile(r"[0-9.]*")
_LN_1024 = 6.931471805599453


class SizeError(ValueError):
    """A size string or number that Concerto would not accept."""


def parse_size(value: str | int, *, what: str = "size") -> int:
    """Bytes for a config size: an integer, or a string as ``bytesize`` 2.x parses it.

    ``what`` names the value in the error (e.g. ``"models[3].vram_required"``).
    """
    if isinstance(value, bool):
        raise SizeError(f"{what}: expected a size, got a boolean {value!r}")
    if isinstance(value, int):
        return _checked(value, value, what)
    if isinstance(value, float) and value.is_integer():
        return _checked(int(value), value, what)
    if not isinstance(value, str):
        raise SizeError(f"{what}: expected a size string or integer, got {value!r}")
    # bytesize first tries the whole text as a u64 ("+14" is accepted, " 14" is not).
    if _PLAIN_INT.match(value) and int(value) <= _U64_MAX:
        return _checked(int(value), value, what)
    number = _NUMBER.match(value).group(0)
    try:
        # Rust's f64 parser accepts "1." and ".5" but not "." or ""; so does this guard.
        if number in ("", ".") or number.count(".") > 1:
            raise ValueError
        x = float(number)
    except ValueError:
        raise SizeError(
            f"{what}: cannot parse {value!r} as a size (expected a number and an optional unit "
            f"such as B, KB, KiB, MB, MiB, GB, GiB, TB, TiB, PB, PiB, EB, EiB)"
        ) from None
    suffix = value[len(number):].lstrip(_RUST_WHITESPACE)
    # bytesize compares units with eq_ignore_ascii_case: "\u212aB" (Kelvin sign) is no "kB".
    factor = _UNITS.get(suffix.lower()) if suffix and suffix.isascii() else None
    if factor is None:
        raise SizeError(
            f"{what}: unknown unit {suffix!r} in {value!r} (use B, K/KB, Ki/KiB, M/MB, Mi/MiB, "
            f"G/GB, Gi/GiB, T/TB, Ti/TiB, P/PB, Pi/PiB, E/EB, Ei/EiB; case does not matter)"
        )
    product = x * float(factor)  # float64 multiply, then truncate: bytesize's `(v * u) as u64`
    n = _U64_MAX if product >= 2.0**64 else int(product)
    return _checked(n, value, what)


def _checked(n: int, original, what: str) -> int:
    if n < 0:
        raise SizeError(f"{what}: size {original!r} is negative")
    if n > MAX_SIZE:
        raise SizeError(f"{what}: size {original!r} is larger than the supported 4 EiB")
    return n


def format_size(b: int) -> str:
    """Concerto's default size text: binary units, one decimal (``14 GB`` -> ``13.0 GiB``)."""
    b = int(b)
    if b < 1024:
        return f"{b} B"
    e = int(math.log(float(b)) / _LN_1024)
    return f"{float(b) / float(1024**e):.1f} {'KMGTPE'[e - 1]}iB"


def describe_size(b: int) -> str:
    """For people: both unit systems, e.g. ``16.0 GB (14.9 GiB)``."""
    return f"{b / 1e9:.1f} GB ({b / 2**30:.1f} GiB)"
