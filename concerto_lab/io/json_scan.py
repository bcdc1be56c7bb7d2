"""Jitted JSON-lines scanning: validate every line and locate a few keys, without Python per line.

Log intake must account for every line (valid, blank, malformed, not an object) and still read a
million lines in well under two seconds. ``json.loads`` per line is 3 µs here and polars' JSON
functions either raise on the first bad line or re-parse the line once per field, so one pass of
a small JSON validator over the raw bytes does all of it: it checks the grammar (RFC 8259),
records where the values of the wanted keys start and end, and leaves decoding to Python for the
few distinct strings (``intern``).

Key roles (``roles`` array, one per wanted key):

* ``ROLE_TOP``: read from the top-level object only (``timestamp``, ``level``, ``target``);
* ``ROLE_EVENT``: an event field, read from the top-level ``fields`` object when the line has
  one, otherwise from the top level (tracing's ``flatten_event`` layout); never from any other
  nested object (``span``, ``spans``);
* ``ROLE_FIELDS``: the container key itself (``fields``).

Duplicate keys: the last one wins, as in serde_json and Python's ``json``. Keys are matched on
their raw bytes, so a key spelt with escapes (``"mod\\u0065l"``) does not match.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# --- value kinds (per wanted key) --------------------------------------------------------------
K_ABSENT, K_STR, K_STR_ESC, K_NUM, K_TRUE, K_FALSE, K_NULL, K_OBJ, K_ARR = range(9)
KIND_NAMES = ("absent", "string", "string", "number", "true", "false", "null", "object", "array")

# --- line status -------------------------------------------------------------------------------
L_BLANK, L_OBJECT, L_MALFORMED, L_ARRAY, L_STRING, L_NUMBER, L_LITERAL = range(7)
NOT_OBJECT_NAMES = {L_ARRAY: "an array", L_STRING: "a string", L_NUMBER: "a number",
                    L_LITERAL: "true/false/null"}  # fmt: skip

# --- why a line is malformed -------------------------------------------------------------------
E_NONE, E_UNEXPECTED, E_TRUNCATED, E_TRAILING, E_DEPTH, E_CONTROL, E_ESCAPE = range(7)

ROLE_TOP, ROLE_EVENT, ROLE_FIELDS = 0, 1, 2

MAX_DEPTH = 512

# --- timestamp parse status --------------------------------------------------------------------
T_OK, T_MISSING, T_NOT_STRING, T_FORMAT, T_RANGE, T_NO_ZONE = range(6)

_S_VALUE, _S_OBJ_FIRST, _S_OBJ_KEY, _S_COLON, _S_ARR_FIRST, _S_AFTER = range(6)


_LUT_LEN = 64


def encode_keys(names) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pack key names for the scanner: bytes, offsets and a (length, first byte) lookup table.

    ``lut[len * 256 + first_byte]`` is the only wanted key with that length and first byte,
    -2 when several share them (then they are compared one by one), -1 when none does.
    """
    raw = [n.encode() for n in names]
    off = np.zeros(len(raw) + 1, dtype=np.int64)
    off[1:] = np.cumsum([len(r) for r in raw])
    lut = np.full(_LUT_LEN * 256, -1, dtype=np.int16)
    for k, r in enumerate(raw):
        if not r or len(r) >= _LUT_LEN:
            raise ValueError(f"key {r!r}: keys must be 1 to {_LUT_LEN - 1} bytes")
        slot = len(r) * 256 + r[0]
        lut[slot] = k if lut[slot] == -1 else -2
    return np.frombuffer(b"".join(raw), dtype=np.uint8).copy(), off, lut


@njit(cache=True, inline="always")
def _is_ws(c):
    return c == 32 or c == 9 or c == 13 or c == 10


@njit(cache=True, inline="always")
def _scan_string(buf, p, le):
    """``buf[p]`` is a quote. Returns (end after closing quote, has_escape, error code)."""
    q = p + 1
    esc = False
    while q < le:
        c = buf[q]
        if c == 34:  # "
            return q + 1, esc, E_NONE
        if c == 92:  # backslash
            esc = True
            if q + 1 >= le:
                return q + 1, esc, E_TRUNCATED
            c2 = buf[q + 1]
            if c2 == 117:  # u
                for j in range(4):
                    if q + 2 + j >= le:
                        return q + 2 + j, esc, E_TRUNCATED
                    h = buf[q + 2 + j]
                    if not ((48 <= h <= 57) or (65 <= h <= 70) or (97 <= h <= 102)):
                        return q + 2 + j, esc, E_ESCAPE
                q += 6
                continue
            if c2 in (34, 92, 47, 98, 102, 110, 114, 116):
                q += 2
                continue
            return q + 1, esc, E_ESCAPE
        if c < 32:
            return q, esc, E_CONTROL
        q += 1
    return q, esc, E_TRUNCATED


@njit(cache=True, inline="always")
def _scan_number(buf, p, le):
    """Number grammar of RFC 8259. Returns (end, error code)."""
    q = p
    if buf[q] == 45:  # -
        q += 1
    if q >= le:
        return q, E_TRUNCATED
    c = buf[q]
    if c == 48:
        q += 1
    elif 49 <= c <= 57:
        while q < le and 48 <= buf[q] <= 57:
            q += 1
    else:
        return q, E_UNEXPECTED
    if q < le and buf[q] == 46:  # .
        q += 1
        if q >= le:
            return q, E_TRUNCATED
        if not (48 <= buf[q] <= 57):
            return q, E_UNEXPECTED
        while q < le and 48 <= buf[q] <= 57:
            q += 1
    if q < le and (buf[q] == 101 or buf[q] == 69):  # e E
        q += 1
        if q < le and (buf[q] == 43 or buf[q] == 45):
            q += 1
        if q >= le:
            return q, E_TRUNCATED
        if not (48 <= buf[q] <= 57):
            return q, E_UNEXPECTED
        while q < le and 48 <= buf[q] <= 57:
            q += 1
    return q, E_NONE


@njit(cache=True, inline="always")
def _match_literal(buf, p, le, a, b, c, d, e, n):
    """Compare ``buf[p:p+n]`` with up to five given bytes. Returns (end, error code)."""
    lit = (a, b, c, d, e)
    for j in range(n):
        if p + j >= le:
            return p + j, E_TRUNCATED
        if buf[p + j] != lit[j]:
            return p + j, E_UNEXPECTED
    return p + n, E_NONE


@njit(cache=True, inline="always")
def _same(buf, s, e, keys_buf, ks):
    for j in range(e - s):
        if buf[s + j] != keys_buf[ks + j]:
            return False
    return True


@njit(cache=True, inline="always")
def _find_key(buf, s, e, keys_buf, keys_off, lut, roles, want_event_only):
    """Index of the wanted key whose bytes equal ``buf[s:e]``, or -1."""
    n = e - s
    if n <= 0 or n >= _LUT_LEN:
        return -1
    k = np.int64(lut[n * 256 + np.int64(buf[s])])
    if k == -1:
        return -1
    if k >= 0:
        if want_event_only and roles[k] != ROLE_EVENT:
            return -1
        return k if _same(buf, s, e, keys_buf, keys_off[k]) else -1
    for k in range(roles.shape[0]):
        if want_event_only and roles[k] != ROLE_EVENT:
            continue
        if keys_off[k + 1] - keys_off[k] == n and _same(buf, s, e, keys_buf, keys_off[k]):
            return k
    return -1


@njit(cache=True, inline="always")
def _record(owner, nk, s, e, kind, top_s, top_e, top_k, fld_s, fld_e, fld_k):
    if owner < 0:
        return
    if owner < nk:
        top_s[owner] = s
        top_e[owner] = e
        top_k[owner] = kind
    elif owner < 2 * nk:
        o = owner - nk
        fld_s[o] = s
        fld_e[o] = e
        fld_k[o] = kind


@njit(cache=True, nogil=True)
def scan_lines(buf, keys_buf, keys_off, keys_lut, roles):
    """Validate each ``\\n``-separated line of ``buf`` and locate the wanted keys' values.

    Returns ``(line_start, line_end, status, err_kind, err_col, vstart, vend, vkind)``; the
    last three are ``(keys, lines)`` arrays (one contiguous row per key) of byte offsets into
    ``buf`` (a string's range includes its quotes) and value kinds. ``line_end`` excludes the
    newline. A UTF-8 BOM at the start of a line
    is skipped; CR and other JSON whitespace around the value are allowed.
    """
    n_bytes = buf.shape[0]
    n_lines = 0
    for i in range(n_bytes):
        if buf[i] == 10:
            n_lines += 1
    if n_bytes > 0 and buf[n_bytes - 1] != 10:
        n_lines += 1
    nk = roles.shape[0]
    fields_key = -1
    for k in range(nk):
        if roles[k] == ROLE_FIELDS:
            fields_key = k
    FIELDS_OWNER = 2 * nk

    line_start = np.empty(n_lines, np.int64)
    line_end = np.empty(n_lines, np.int64)
    status = np.empty(n_lines, np.int8)
    err_kind = np.zeros(n_lines, np.int8)
    err_col = np.zeros(n_lines, np.int32)
    vstart = np.zeros((nk, n_lines), np.int64)
    vend = np.zeros((nk, n_lines), np.int64)
    vkind = np.zeros((nk, n_lines), np.int8)

    top_s = np.zeros(nk, np.int64)
    top_e = np.zeros(nk, np.int64)
    top_k = np.zeros(nk, np.int8)
    fld_s = np.zeros(nk, np.int64)
    fld_e = np.zeros(nk, np.int64)
    fld_k = np.zeros(nk, np.int8)
    st_kind = np.zeros(MAX_DEPTH, np.int8)  # 0 object, 1 array
    st_owner = np.zeros(MAX_DEPTH, np.int64)
    st_start = np.zeros(MAX_DEPTH, np.int64)

    ls = 0
    for li in range(n_lines):
        le = ls
        while le < n_bytes and buf[le] != 10:
            le += 1
        line_start[li] = ls
        line_end[li] = le
        top_k[:] = K_ABSENT
        fld_k[:] = K_ABSENT
        fields_present = False

        p = ls
        if le - p >= 3 and buf[p] == 0xEF and buf[p + 1] == 0xBB and buf[p + 2] == 0xBF:
            p += 3
        while p < le and _is_ws(buf[p]):
            p += 1
        if p >= le:
            status[li] = L_BLANK
            ls = le + 1
            continue

        c0 = buf[p]
        if c0 == 123:
            first = L_OBJECT
        elif c0 == 91:
            first = L_ARRAY
        elif c0 == 34:
            first = L_STRING
        elif c0 == 45 or (48 <= c0 <= 57):
            first = L_NUMBER
        else:
            first = L_LITERAL

        d = 0
        state = _S_VALUE
        owner = -1
        err = E_NONE
        while True:
            while p < le and _is_ws(buf[p]):
                p += 1
            if p >= le:
                if not (state == _S_AFTER and d == 0):
                    err = E_TRUNCATED
                break
            c = buf[p]
            if state == _S_VALUE:
                if c == 123 or c == 91:  # { [
                    if d >= MAX_DEPTH:
                        err = E_DEPTH
                        break
                    st_kind[d] = 0 if c == 123 else 1
                    st_owner[d] = owner
                    st_start[d] = p
                    if owner == FIELDS_OWNER:
                        fields_present = True
                        fld_k[:] = K_ABSENT
                    d += 1
                    state = _S_OBJ_FIRST if c == 123 else _S_ARR_FIRST
                    p += 1
                    continue
                if c == 34:
                    q, esc, err = _scan_string(buf, p, le)
                    if err != E_NONE:
                        p = q
                        break
                    kind = K_STR_ESC if esc else K_STR
                elif c == 45 or (48 <= c <= 57):
                    q, err = _scan_number(buf, p, le)
                    if err != E_NONE:
                        p = q
                        break
                    kind = K_NUM
                elif c == 116:
                    q, err = _match_literal(buf, p, le, 116, 114, 117, 101, 0, 4)
                    kind = K_TRUE
                elif c == 102:
                    q, err = _match_literal(buf, p, le, 102, 97, 108, 115, 101, 5)
                    kind = K_FALSE
                elif c == 110:
                    q, err = _match_literal(buf, p, le, 110, 117, 108, 108, 0, 4)
                    kind = K_NULL
                else:
                    err = E_UNEXPECTED
                    break
                if err != E_NONE:
                    p = q
                    break
                if owner == FIELDS_OWNER:
                    fields_present = True
                    fld_k[:] = K_ABSENT
                else:
                    _record(owner, nk, p, q, kind, top_s, top_e, top_k, fld_s, fld_e, fld_k)
                p = q
                state = _S_AFTER
            elif state == _S_OBJ_FIRST or state == _S_OBJ_KEY:
                if c == 125 and state == _S_OBJ_FIRST:  # }
                    d -= 1
                    _record(st_owner[d], nk, st_start[d], p + 1, K_OBJ,
                            top_s, top_e, top_k, fld_s, fld_e, fld_k)
                    p += 1
                    state = _S_AFTER
                    continue
                if c != 34:
                    err = E_UNEXPECTED
                    break
                q, esc, err = _scan_string(buf, p, le)
                if err != E_NONE:
                    p = q
                    break
                owner = -1
                if not esc and first == L_OBJECT:
                    if d == 1:
                        k = _find_key(buf, p + 1, q - 1, keys_buf, keys_off, keys_lut, roles, False)
                        if k >= 0:
                            owner = FIELDS_OWNER if k == fields_key else k
                    elif d == 2 and st_owner[1] == FIELDS_OWNER and st_kind[1] == 0:
                        k = _find_key(buf, p + 1, q - 1, keys_buf, keys_off, keys_lut, roles, True)
                        if k >= 0:
                            owner = nk + k
                p = q
                state = _S_COLON
            elif state == _S_COLON:
                if c != 58:
                    err = E_UNEXPECTED
                    break
                p += 1
                state = _S_VALUE
            elif state == _S_ARR_FIRST:
                if c == 93:  # ]
                    d -= 1
                    _record(st_owner[d], nk, st_start[d], p + 1, K_ARR,
                            top_s, top_e, top_k, fld_s, fld_e, fld_k)
                    p += 1
                    state = _S_AFTER
                    continue
                owner = -1
                state = _S_VALUE
            else:  # _S_AFTER
                if d == 0:
                    err = E_TRAILING
                    break
                top = st_kind[d - 1]
                if c == 44:  # ,
                    p += 1
                    if top == 0:
                        state = _S_OBJ_KEY
                    else:
                        owner = -1
                        state = _S_VALUE
                elif (c == 125 and top == 0) or (c == 93 and top == 1):
                    d -= 1
                    _record(st_owner[d], nk, st_start[d], p + 1, K_OBJ if top == 0 else K_ARR,
                            top_s, top_e, top_k, fld_s, fld_e, fld_k)
                    p += 1
                else:
                    err = E_UNEXPECTED
                    break

        if err != E_NONE:
            status[li] = L_MALFORMED
            err_kind[li] = err
            err_col[li] = p - ls + 1
        else:
            status[li] = first
            if first == L_OBJECT:
                for k in range(nk):
                    if roles[k] == ROLE_EVENT and fields_present:
                        vstart[k, li] = fld_s[k]
                        vend[k, li] = fld_e[k]
                        vkind[k, li] = fld_k[k]
                    elif roles[k] != ROLE_FIELDS:
                        vstart[k, li] = top_s[k]
                        vend[k, li] = top_e[k]
                        vkind[k, li] = top_k[k]
        ls = le + 1
    return line_start, line_end, status, err_kind, err_col, vstart, vend, vkind


# --- timestamps --------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _digits(buf, s, n):
    v = 0
    for j in range(n):
        c = buf[s + j]
        if c < 48 or c > 57:
            return -1
        v = v * 10 + (c - 48)
    return v


@njit(cache=True)
def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (exact for any int64 year)."""
    y -= 1 if m <= 2 else 0
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    mp = m - 3 if m > 2 else m + 9
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=True)
def _days_in_month(y, m):
    if m == 2:
        leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
        return 29 if leap else 28
    if m == 4 or m == 6 or m == 9 or m == 11:
        return 30
    return 31


@njit(cache=True)
def parse_datetime(buf, s, e, lenient):
    """Parse ``buf[s:e]`` as a date-time. Returns (status, local epoch ms, has_zone, offset min).

    Strict (logs, RFC 3339): ``YYYY-MM-DD(T|t| )HH:MM:SS[.f+](Z|z|±HH:MM)``. Fraction digits are
    a decimal fraction of a second, any count, sub-millisecond digits truncated. Lenient
    (request tables) also takes no zone, ``±HHMM``, ``±HH``, no seconds, or a bare date.
    A leap second (``:60``) counts as the next second, as chrono's millisecond count does.
    """
    n = e - s
    if n < 10:
        return T_FORMAT, 0, False, 0
    y = _digits(buf, s, 4)
    mo = _digits(buf, s + 5, 2)
    dd = _digits(buf, s + 8, 2)
    if y < 0 or mo < 0 or dd < 0 or buf[s + 4] != 45 or buf[s + 7] != 45:
        return T_FORMAT, 0, False, 0
    hh = 0
    mi = 0
    ss = 0
    ms = 0
    p = s + 10
    if p == e:
        if not lenient:
            return T_FORMAT, 0, False, 0
    else:
        sep = buf[p]
        if not (sep == 84 or sep == 116 or sep == 32) or p + 6 > e:
            return T_FORMAT, 0, False, 0
        hh = _digits(buf, p + 1, 2)
        mi = _digits(buf, p + 4, 2)
        if hh < 0 or mi < 0 or buf[p + 3] != 58:
            return T_FORMAT, 0, False, 0
        p += 6
        if p + 3 <= e and buf[p] == 58:
            ss = _digits(buf, p + 1, 2)
            if ss < 0:
                return T_FORMAT, 0, False, 0
            p += 3
            if p < e and buf[p] == 46:
                p += 1
                nd = 0
                while p < e and 48 <= buf[p] <= 57:
                    if nd < 3:
                        ms = ms * 10 + (buf[p] - 48)
                    nd += 1
                    p += 1
                if nd == 0:
                    return T_FORMAT, 0, False, 0
                for _ in range(3 - min(nd, 3)):
                    ms *= 10
        elif not lenient:
            return T_FORMAT, 0, False, 0
    has_zone = False
    off = 0
    if p < e:
        c = buf[p]
        if c == 90 or c == 122:  # Z z
            has_zone = True
            p += 1
        elif c == 43 or c == 45:  # + -
            sign = 1 if c == 43 else -1
            oh = -1
            om = 0
            if p + 6 == e and buf[p + 3] == 58:
                oh = _digits(buf, p + 1, 2)
                om = _digits(buf, p + 4, 2)
                p += 6
            elif lenient and p + 5 == e:
                oh = _digits(buf, p + 1, 2)
                om = _digits(buf, p + 3, 2)
                p += 5
            elif lenient and p + 3 == e:
                oh = _digits(buf, p + 1, 2)
                p += 3
            if oh < 0 or om < 0:
                return T_FORMAT, 0, False, 0
            if oh > 23 or om > 59:
                return T_RANGE, 0, False, 0
            has_zone = True
            off = sign * (oh * 60 + om)
    if p != e:
        return T_FORMAT, 0, False, 0
    if mo < 1 or mo > 12 or dd < 1 or dd > _days_in_month(y, mo):
        return T_RANGE, 0, False, 0
    if hh > 23 or mi > 59 or ss > 60:
        return T_RANGE, 0, False, 0
    days = days_from_civil(np.int64(y), np.int64(mo), np.int64(dd))
    local = ((days * 24 + hh) * 60 + mi) * 60 + ss
    local = local * 1000 + ms
    if not has_zone and not lenient:
        return T_NO_ZONE, local, False, 0
    return T_OK, local, has_zone, off


@njit(cache=True, nogil=True)
def parse_log_times(buf, vstart, vend, vkind):
    """RFC 3339 timestamps of one key column -> (UTC epoch ms, T_* status) per line."""
    n = vstart.shape[0]
    out = np.zeros(n, np.int64)
    st = np.empty(n, np.int8)
    for i in range(n):
        k = vkind[i]
        if k == K_ABSENT or k == K_NULL:
            st[i] = T_MISSING
        elif k != K_STR:
            st[i] = T_NOT_STRING if k != K_STR_ESC else T_FORMAT
        else:
            s, local, _, off = parse_datetime(buf, vstart[i] + 1, vend[i] - 1, False)
            st[i] = s
            out[i] = local - off * 60000
    return out, st


@njit(cache=True, nogil=True)
def parse_table_times(buf, starts, ends):
    """Date-time strings (lenient) -> (local epoch ms, status, has_zone, offset minutes)."""
    n = starts.shape[0]
    local = np.zeros(n, np.int64)
    st = np.empty(n, np.int8)
    zoned = np.zeros(n, np.bool_)
    off = np.zeros(n, np.int32)
    for i in range(n):
        s, t, z, o = parse_datetime(buf, starts[i], ends[i], True)
        st[i] = s
        local[i] = t
        zoned[i] = z
        off[i] = o
    return local, st, zoned, off


@njit(cache=True, nogil=True)
def parse_ints(buf, vstart, vend, vkind):
    """Integer values of a number column (nulls where absent, not an integer or beyond int64)."""
    n = vstart.shape[0]
    out = np.zeros(n, np.int64)
    ok = np.zeros(n, np.bool_)
    for i in range(n):
        if vkind[i] != K_NUM:
            continue
        s, e = vstart[i], vend[i]
        neg = buf[s] == 45
        if neg:
            s += 1
        if e - s > 18:
            continue
        v = 0
        good = True
        for j in range(s, e):
            c = buf[j]
            if c < 48 or c > 57:
                good = False
                break
            v = v * 10 + (c - 48)
        if good:
            out[i] = -v if neg else v
            ok[i] = True
    return out, ok


@njit(cache=True, nogil=True)
def equals_literal(buf, vstart, vend, vkind, lit):
    """Rows whose value is the plain JSON string ``"lit"`` (escaped spellings are not seen)."""
    n = vstart.shape[0]
    m = lit.shape[0]
    out = np.zeros(n, np.bool_)
    for i in range(n):
        if vkind[i] != K_STR or vend[i] - vstart[i] != m + 2:
            continue
        s = vstart[i] + 1
        same = True
        for j in range(m):
            if buf[s + j] != lit[j]:
                same = False
                break
        out[i] = same
    return out


# --- epoch numbers ------------------------------------------------------------------------------
N_OK, N_BAD, N_RANGE = 0, 1, 2


@njit(cache=True)
def _decimal(buf, s, e):
    """``[-+]digits[.digits][e[-+]digits]`` -> (ok, negative, up to 18 significant digits,
    power of ten). Surrounding spaces are allowed; digits beyond 18 are dropped."""
    while s < e and buf[s] == 32:
        s += 1
    while e > s and buf[e - 1] == 32:
        e -= 1
    if s >= e:
        return False, False, 0, 0
    neg = buf[s] == 45
    if buf[s] == 45 or buf[s] == 43:
        s += 1
    mant = 0
    nd = 0
    exp = 0
    seen = False
    p = s
    while p < e and 48 <= buf[p] <= 57:
        seen = True
        if nd < 18:
            if mant > 0 or buf[p] != 48:
                mant = mant * 10 + (buf[p] - 48)
                nd += 1
        else:
            exp += 1
        p += 1
    if p < e and buf[p] == 46:
        p += 1
        while p < e and 48 <= buf[p] <= 57:
            seen = True
            if nd < 18:
                if mant > 0 or buf[p] != 48:
                    mant = mant * 10 + (buf[p] - 48)
                    nd += 1
                exp -= 1
            p += 1
    if not seen:
        return False, False, 0, 0
    if p < e and (buf[p] == 101 or buf[p] == 69):
        p += 1
        esign = 1
        if p < e and (buf[p] == 45 or buf[p] == 43):
            esign = -1 if buf[p] == 45 else 1
            p += 1
        if p >= e:
            return False, False, 0, 0
        ev = 0
        while p < e and 48 <= buf[p] <= 57:
            if ev < 10000:
                ev = ev * 10 + (buf[p] - 48)
            p += 1
        exp += esign * ev
    if p != e:
        return False, False, 0, 0
    return True, neg, mant, exp


@njit(cache=True, nogil=True)
def parse_epoch_numbers(buf, starts, ends):
    """Decimal strings -> (status, negative, mantissa, exponent, approximate float value)."""
    n = starts.shape[0]
    st = np.empty(n, np.int8)
    neg = np.zeros(n, np.bool_)
    mant = np.zeros(n, np.int64)
    exp = np.zeros(n, np.int64)
    approx = np.zeros(n, np.float64)
    for i in range(n):
        ok, ng, m, x = _decimal(buf, starts[i], ends[i])
        st[i] = N_OK if ok else N_BAD
        neg[i] = ng
        mant[i] = m
        exp[i] = x
        if ok:
            v = m * 10.0 ** x if x > -400 else 0.0
            approx[i] = -v if ng else v
    return st, neg, mant, exp, approx


@njit(cache=True, nogil=True)
def epoch_to_ms(neg, mant, exp, shift):
    """Exact ``floor(±mant * 10**(exp + shift))`` as int64 ms; N_RANGE where it does not fit.

    ``shift`` turns the unit into ms: s 3, ms 0, us -3, ns -6.
    """
    n = mant.shape[0]
    out = np.zeros(n, np.int64)
    st = np.zeros(n, np.int8)
    lim = np.int64(9_000_000_000_000_000_000)
    for i in range(n):
        m = mant[i]
        x = exp[i] + shift
        if m == 0:
            continue
        if x >= 0:
            if x > 18:
                st[i] = N_RANGE
                continue
            f = np.int64(10) ** x
            if m > lim // f:
                st[i] = N_RANGE
                continue
            v = m * f
            out[i] = -v if neg[i] else v
        else:
            if x < -18:
                out[i] = -1 if neg[i] else 0
                continue
            f = np.int64(10) ** (-x)
            q = m // f
            r = m - q * f
            if neg[i]:
                out[i] = -q - (1 if r != 0 else 0)
            else:
                out[i] = q
    return out, st


# --- interning ---------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def intern(buf, starts, ends, mask):
    """Codes for the byte ranges ``buf[starts:ends]`` where ``mask``; equal bytes share a code.

    Codes are numbered in first-appearance order. Returns (codes with -1 where not masked,
    start and end of each code's first occurrence). Exact: slots compare bytes, not hashes.
    """
    n = starts.shape[0]
    cap = 16
    while cap < 2 * n:
        cap *= 2
    table = np.full(cap, -1, np.int32)
    rep_s = np.empty(n, np.int64)
    rep_e = np.empty(n, np.int64)
    codes = np.full(n, -1, np.int32)
    ncodes = 0
    mask_ = np.uint64(cap - 1)
    for i in range(n):
        if not mask[i]:
            continue
        s = starts[i]
        e = ends[i]
        h = np.uint64(14695981039346656037)
        for j in range(s, e):
            h = (h ^ np.uint64(buf[j])) * np.uint64(1099511628211)
        slot = h & mask_
        while True:
            c = table[slot]
            if c < 0:
                table[slot] = ncodes
                rep_s[ncodes] = s
                rep_e[ncodes] = e
                codes[i] = ncodes
                ncodes += 1
                break
            rs = rep_s[c]
            re_ = rep_e[c]
            same = re_ - rs == e - s
            if same:
                for j in range(e - s):
                    if buf[rs + j] != buf[s + j]:
                        same = False
                        break
            if same:
                codes[i] = c
                break
            slot = (slot + np.uint64(1)) & mask_
    return codes, rep_s[:ncodes].copy(), rep_e[:ncodes].copy()
