"""The Ray engine against a real local Ray head (2 CPUs on 127.0.0.1), stopped afterwards."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'concerto-lab[ray]')")

from concerto_lab.analysis.sweep import sweep  # noqa: E402
from concerto_lab.model.cluster import ModelSpec, RoutingConfig  # noqa: E402
from test_sweep import GB, full_grid, zipf_trace  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> list[str]:
    exe = shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "ray.scripts.scripts"]


@pytest.fixture(scope="module")
def ray_head():
    """``HOST:PORT`` of a fresh Ray head of our own, stopped afterwards whatever happens.

    ``ray start`` runs in a new session, so the head's processes share one process group that
    we stop by its id. (``ray stop`` would also stop any other Ray head on the machine: another
    test run, a colleague's cluster.) On a loaded machine the raylet can miss Ray's fixed 30 s
    start-up window, so a failed start is retried once.
    """
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # Workers inherit the head's environment: they import this checkout, and its compiled
    # kernels, whether or not the package is installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    groups, tmps, address, errors = [], [], None, []
    try:
        for _attempt in range(2):
            port = _free_port()
            tmps.append(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short socket paths
            cmd = _ray_cli() + [
                "start", "--head", "--node-ip-address", "127.0.0.1", "--num-cpus", "2",
                "--port", str(port), "--include-dashboard=false", "--temp-dir", tmps[-1],
                "--disable-usage-stats", "--include-log-monitor=false",
            ]  # fmt: skip
            start = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)  # fmt: skip
            groups.append(start.pid)
            out, _ = start.communicate(timeout=180)
            if start.returncode == 0:
                address = f"127.0.0.1:{port}"
                break
            errors.append(out[-1500:])
            _stop_group(groups[-1])
        if address is None:
            pytest.fail("ray start failed twice:\n" + "\n".join(errors))
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for pgid in groups:
            _stop_group(pgid)
        for tmp in tmps:
            shutil.rmtree(tmp, ignore_errors=True)


def _stop_group(pgid: int) -> None:
    """SIGTERM to one process group we started, SIGKILL to whatever is left after 4 s."""
    for sig, grace in ((signal.SIGTERM, 4), (signal.SIGKILL, 15)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def test_ray_engine_equals_local_engine(ray_head):
    config = RoutingConfig(
        models=tuple(ModelSpec(f"m{i}", s * GB) for i, s in enumerate([7, 5, 9, 3, 6, 4, 8, 2, 11])),
        headroom=GB,
    )  # fmt: skip
    nodes = {"node-a": zipf_trace(3000, 9, seed=11), "node-b": zipf_trace(2000, 9, seed=5)}
    grid = full_grid(nodes["node-a"])
    local = sweep(nodes, config, grid, progress=False)
    seen = []
    # runtime_env={}: the head's own workers (already started, importing this checkout) run
    # the tasks; by default the package is shipped to the cluster, as a remote one needs.
    remote = sweep(nodes, config, grid, engine="ray", address=ray_head,
                   progress=lambda d, t: seen.append((d, t)), runtime_env={})  # fmt: skip
    assert remote.height == 2 * len(grid) == 96
    assert remote.equals(local)
    assert seen[-1] == (48 * 5000, 48 * 5000)
