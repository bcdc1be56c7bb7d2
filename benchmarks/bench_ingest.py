"""Concerto JSON-log ingest speed and memory: lines/s and peak RSS for a generated log.

    python benchmarks/bench_ingest.py                 # 1 M lines
    python benchmarks/bench_ingest.py --lines 20000000 --compress zstd

Generates a Concerto-style ``--log-format json`` log (the production fixture's event mix: about
57 % requests, the rest launches, evictions, ready lines, rejects..., plus a few plain-text engine
lines and blank lines) into a temporary directory, then reads it in a fresh process so peak RSS
is the reader's own: ``read_concerto_log`` (requests -> Trace) twice (the first call includes
Numba's one-time start-up in the process) and ``read_log_events`` (every event -> DataFrame).
It prints figures; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
MODELS = [f"model-{k:02d}-instruct" for k in range(40)]

# (share, template) after the production fixture's message counts (7,483 requests in 13,229 lines)
_EVENTS = [
    (0.565, '{{"timestamp":"{ts}","level":"INFO","fields":{{"message":"incoming chat completion",'
            '"model":"{m}","stream":true}},"target":"concerto_api::routes::chat"}}'),
    (0.143, '{{"timestamp":"{ts}","level":"INFO","fields":{{"message":"backend ready","model_id":'
            '"{m}","pid":360,"port":8101}},"target":"concerto_backend::process"}}'),
    (0.072, '{{"timestamp":"{ts}","level":"INFO","fields":{{"message":"launching backend","model":'
            '"{m}","gpu_id":"gpu:2"}},"target":"concerto_api::orchestrator"}}'),
    (0.072, '{{"timestamp":"{ts}","level":"INFO","fields":{{"message":"spawning backend process",'
            '"model_id":"{m}","gpu_id":"gpu:2","port":8100,"engine":"Vllm","health_path":"/health"'
            '}},"target":"concerto_backend::process"}}'),
    (0.070, '{{"timestamp":"{ts}","level":"INFO","fields":{{"message":"stopping backend","pid":459,'
            '"port":8102}},"target":"concerto_backend::process"}}'),
    (0.070, '{{"timestamp":"{ts}","level":"INFO","fields":{{"message":"evicting backend","victim":'
            '"{m}","pid":459,"port":8102}},"target":"concerto_api::orchestrator"}}'),
    (0.004, '{{"timestamp":"{ts}","level":"WARN","fields":{{"message":"routing rejected","model":'
            '"{m}","reason":"Model \'{m}\' not found in registry"}},"target":'
            '"concerto_api::orchestrator"}}'),
    (0.0035, "INFO 12-03 00:00:09 [engine.py:282] plain-text engine output, not JSON"),
    (0.0005, ""),
]  # fmt: skip


def generate(path: Path, n_lines: int, seed: int = 0, chunk: int = 200_000) -> None:
    """Write ``n_lines`` lines (timestamps increasing, 6 fraction digits, UTC) in chunks."""
    rng = np.random.default_rng(seed)
    shares = np.array([s for s, _ in _EVENTS])
    templates = [t for _, t in _EVENTS]
    t_us = np.int64(1_733_184_000_000_000)
    with open(path, "w", encoding="utf-8") as f:
        for lo in range(0, n_lines, chunk):
            n = min(chunk, n_lines - lo)
            steps = rng.integers(1, 40_000, n).cumsum()
            stamps = np.datetime_as_string((t_us + steps).astype("datetime64[us]"), unit="us")
            t_us = t_us + steps[-1]
            kinds = rng.choice(len(templates), n, p=shares / shares.sum())
            models = rng.zipf(1.6, n) % len(MODELS)
            rows = zip(kinds.tolist(), stamps.tolist(), models.tolist())
            out = [templates[k].format(ts=f"{s}Z", m=MODELS[m]) for k, s, m in rows]
            f.write("\n".join(out) + "\n")


def compress(path: Path, kind: str) -> Path:
    if kind == "gzip":
        import gzip
        import shutil

        out = path.with_suffix(path.suffix + ".gz")
        with open(path, "rb") as src, gzip.open(out, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
    else:
        import zstandard

        out = path.with_suffix(path.suffix + ".zst")
        with open(path, "rb") as src, open(out, "wb") as dst:
            zstandard.ZstdCompressor(level=3).copy_stream(src, dst)
    path.unlink()
    return out


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def replay_figures(trace) -> dict:
    """Replay the generated log's requests (40 models of 1-40 GB on 4 x 48 GB, LRU)."""
    from concerto_lab import ModelSpec, RoutingConfig, replay

    config = RoutingConfig(models=tuple(ModelSpec(m, (k + 1) * 10**9) for k, m in enumerate(MODELS)))
    t0 = time.perf_counter()
    s = replay(trace, config, ["48GB"] * 4, warn=False).summary()
    return {"replay_s": time.perf_counter() - t0, "replay_loads": s["loads"],
            "rss_peak_replay_mib": _rss_mib()}


def measure(path: str, events: bool, replay: bool = False) -> dict:
    """Runs in a fresh process: times and peak RSS of the readers on ``path``."""
    t0 = time.perf_counter()
    from concerto_lab.io.concerto_log import read_concerto_log, read_log_events

    out = {"import_s": time.perf_counter() - t0, "rss_after_import_mib": _rss_mib()}
    t0 = time.perf_counter()
    trace = read_concerto_log(path)
    out["first_read_s"] = time.perf_counter() - t0
    out["lines"] = trace.report.lines_read
    out["requests"] = len(trace)
    out["skipped"] = len(trace.report.skipped)
    del trace
    t0, c0 = time.perf_counter(), time.process_time()
    trace = read_concerto_log(path)
    out["warm_read_s"] = time.perf_counter() - t0
    out["warm_read_cpu_s"] = time.process_time() - c0  # all threads; wall time above
    out["rss_peak_trace_mib"] = _rss_mib()
    if replay:
        out.update(replay_figures(trace))
    del trace
    if events:
        t0 = time.perf_counter()
        frame, _ = read_log_events(path)
        out["events_read_s"] = time.perf_counter() - t0
        out["events_rows"] = frame.height
        out["events_frame_mib"] = frame.estimated_size() / 2**20
        out["rss_peak_events_mib"] = _rss_mib()
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--compress", choices=["none", "gzip", "zstd"], default="none")
    ap.add_argument("--no-events", action="store_true", help="skip the read_log_events timing")
    ap.add_argument("--replay", action="store_true",
                    help="also replay the requests read (peak RSS of read + replay)")
    ap.add_argument("--keep", metavar="DIR", help="write the log here and keep it")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--measure", metavar="PATH", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, not args.no_events, args.replay)))
        return

    tmp = None
    if args.keep:
        folder = Path(args.keep)
        folder.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench_ingest_")
        folder = Path(tmp.name)
    try:
        path = folder / "concerto.log"
        t0 = time.perf_counter()
        generate(path, args.lines)
        size = path.stat().st_size
        if args.compress != "none":
            path = compress(path, args.compress)
        gen_s = time.perf_counter() - t0
        cmd = [sys.executable, __file__, "--measure", str(path)]
        if args.no_events:
            cmd.append("--no-events")
        if args.replay:
            cmd.append("--replay")
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                        env=env).stdout)  # fmt: skip
    finally:
        if tmp is not None:
            tmp.cleanup()
    mlines = res["lines"] / 1e6
    res.update(
        file=path.name,
        file_bytes=path.stat().st_size if args.keep else None,
        log_mib=size / 2**20,
        generate_s=gen_s,
        first_lines_per_s=res["lines"] / res["first_read_s"],
        warm_lines_per_s=res["lines"] / res["warm_read_s"],
        peak_rss_trace_mib_per_mline=(res["rss_peak_trace_mib"] - res["rss_after_import_mib"])
        / mlines,
    )
    if "events_read_s" in res:
        res["events_lines_per_s"] = res["lines"] / res["events_read_s"]
    if args.json:
        print(json.dumps(res))
        return
    print(f"log: {res['lines']:,} lines ({res['log_mib']:.0f} MiB uncompressed, "
          f"{args.compress}), {res['requests']:,} requests, {res['skipped']:,} skipped lines")
    print(f"read_concerto_log, first call in process: {res['first_read_s']:.2f} s "
          f"({res['first_lines_per_s'] / 1e6:.2f} M lines/s; includes Numba start-up)")
    print(f"read_concerto_log, warm:                  {res['warm_read_s']:.2f} s "
          f"({res['warm_lines_per_s'] / 1e6:.2f} M lines/s; {res['warm_read_cpu_s']:.2f} s CPU, "
          f"all threads)")
    print(f"peak RSS after both (whole process):      {res['rss_peak_trace_mib']:.0f} MiB "
          f"(imports alone {res['rss_after_import_mib']:.0f} MiB; "
          f"{res['peak_rss_trace_mib_per_mline']:.0f} MiB above that per million lines)")
    if "replay_s" in res:
        print(f"replay of those requests:                 {res['replay_s']:.2f} s, "
              f"{res['replay_loads']:,} loads; peak RSS {res['rss_peak_replay_mib']:.0f} MiB")
    if "events_read_s" in res:
        print(f"read_log_events:                          {res['events_read_s']:.2f} s "
              f"({res['events_lines_per_s'] / 1e6:.2f} M lines/s), frame "
              f"{res['events_frame_mib']:.0f} MiB, peak RSS "
              f"{res['rss_peak_events_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
