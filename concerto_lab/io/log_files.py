"""Log files as byte batches: paths, globs and directories of rotated files, gzip and zstd.

A log may be one file, a directory, a glob, or a list of them, and rotated files are one log:
``x.log.2``, ``x.log.1``, ``x.log`` (logrotate numbering, oldest first), or dated suffixes
(``x.log.2024-12-03``, ascending) before the live file. Readers get whole lines in batches of a
bounded size, so memory does not grow with the file.
"""

from __future__ import annotations

import glob
import gzip
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

#: Bytes per batch (about 170,000 Concerto log lines): big enough for vectorised work, small
#: enough that a log larger than memory is never held whole.
BATCH_BYTES = 32 * 2**20

_COMPRESSED = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
_NUMBERED = re.compile(r"^(?P<base>.+)\.(?P<n>\d{1,6})$")
_DATED = re.compile(r"^(?P<base>.+?)[.-](?P<date>\d{4}-?\d{2}-?\d{2}(?:[-_T]?\d{2}(?:-?\d{2})?)?)$")


class LogFileError(OSError):
    """A path that names no readable log file."""


def compression_of(path: Path) -> str | None:
    return _COMPRESSED.get(path.suffix.lower())


def _rotation_key(path: Path) -> tuple:
    name = path.name
    if compression_of(path):
        name = name[: -len(path.suffix)]
    m = _NUMBERED.match(name)
    if m:  # logrotate: higher number = older
        return (str(path.parent), m["base"], 0, -int(m["n"]), "")
    m = _DATED.match(name)
    if m:
        return (str(path.parent), m["base"], 1, 0, m["date"].replace("-", ""))
    return (str(path.parent), name, 2, 0, "")


def order_log_files(paths: Iterable[Path]) -> list[Path]:
    """Oldest first: ``x.log.3``, ``x.log.2.gz``, ``x.log.1``, then dated files, then ``x.log``."""
    return sorted(dict.fromkeys(Path(p) for p in paths), key=_rotation_key)


def expand_log_paths(paths) -> list[Path]:
    """Files named by ``paths`` (a path, a glob, a directory, or a list of them), oldest first.

    A directory means every non-hidden regular file in it. The given order of separate
    arguments does not matter: rotated files are ordered by their names.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            kids = [c for c in p.iterdir() if c.is_file() and not c.name.startswith(".")]
            if not kids:
                raise LogFileError(f"{p}: directory holds no log files")
            found.extend(kids)
        elif p.is_file():
            found.append(p)
        elif glob.has_magic(str(item)):
            hits = [Path(h) for h in glob.glob(str(item)) if Path(h).is_file()]
            if not hits:
                raise LogFileError(f"{item}: no file matches this pattern")
            found.extend(hits)
        else:
            raise LogFileError(f"{p}: no such file or directory")
    return order_log_files(found)


@dataclass
class Batch:
    """Whole lines of one file: ``data`` ends at a newline, except a file's unterminated tail.

    ``data`` is a view of a buffer the reader reuses: use it before asking for the next batch.
    """

    data: memoryview
    done_bytes: int  # bytes of the (possibly compressed) file consumed so far


def _open_raw(path: Path):
    kind = compression_of(path)
    raw = open(path, "rb")
    if kind == "gzip":
        return raw, gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "zstd":
        import zstandard

        return raw, zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return raw, raw


def _is_stream_error(e: Exception) -> bool:
    # gzip: EOFError/BadGzipFile(OSError); zstandard.ZstdError derives from Exception only.
    return isinstance(e, (EOFError, OSError)) or type(e).__module__.startswith("zstandard")


def read_batches(path: Path, batch_bytes: int = BATCH_BYTES) -> Iterator[Batch]:
    """Yield ``path``'s lines in batches of about ``batch_bytes`` (decompressed).

    One buffer is reused (the tail of a partial line moves to its front), so memory stays at
    about one batch whatever the file size. A compressed stream that ends early or is corrupt
    raises ``TruncatedStream`` after every byte decoded before the fault has been yielded (a
    partial last line included), so the caller can account for the lines and report the fault.
    """
    raw, stream = _open_raw(path)
    # One source read per call, so a fault never discards bytes already decoded.
    readinto = getattr(stream, "readinto1", None) or stream.readinto
    batch_bytes = max(int(batch_bytes), 1)
    buf = bytearray(batch_bytes)
    rest = 0  # bytes of an unfinished line at the front of buf
    err = None
    try:
        while True:
            if len(buf) - rest < max(1, batch_bytes // 2):  # a line longer than a batch grows it
                grown = bytearray(len(buf) + max(batch_bytes, 1))
                grown[:rest] = buf[:rest]
                buf = grown
            view = memoryview(buf)
            size = rest
            while size < len(buf):
                try:
                    got = readinto(view[size:])
                except Exception as e:
                    if not _is_stream_error(e):
                        raise
                    err = e
                    break
                if not got:
                    break
                size += got
            ended = size < len(buf)  # end of stream (or a fault)
            if ended:
                if size:
                    yield Batch(view[:size], raw.tell())
                break
            cut = buf.rfind(b"\n", 0, size)
            if cut < 0:
                rest = size
                continue
            yield Batch(view[: cut + 1], raw.tell())
            rest = size - cut - 1
            buf[:rest] = buf[cut + 1 : size]
    finally:
        if stream is not raw:
            stream.close()
        raw.close()
    if err is not None:
        raise TruncatedStream(f"{path.name}: compressed stream ends early or is corrupt ({err})")


class TruncatedStream(Exception):
    """A gzip/zstd file cut short: its complete lines were read, the rest is missing."""
