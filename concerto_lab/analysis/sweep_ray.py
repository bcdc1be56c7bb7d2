"""The Ray engine of ``sweep``: the same jobs as the local engine, as tasks on a Ray cluster.

Each node's trace goes into the object store once (``ray.put``); every task gets a reference to
it (read in place, zero-copy, on the machine running the task) and a chunk of jobs (a few KB of
small arrays), runs them with the local engine on one CPU, and returns their counter rows. The
driver builds the same table as a local sweep. By default this package is shipped to the
cluster with the job (``py_modules``), so workers run exactly the driver's code; the cluster
needs only numba, numpy and polars installed (e.g. in a KubeRay image).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ..model.cluster import ConfigError
from .sweep import KERNEL_STAMP, T_GPU, Job, run_local

PACKAGE = Path(__file__).resolve().parent.parent
#: Tasks per cluster CPU: enough for balance and progress, few enough to keep overhead small.
TASKS_PER_CPU = 4


def _task(arrays, jobs, width):
    """One Ray task: a chunk of jobs (all on one node's trace) on this worker's CPU.

    Returns the worker's kernel stamp too, so a cluster running other kernel code is caught.
    """
    return KERNEL_STAMP, run_local({0: arrays}, jobs, width, workers=1)


def run_ray(
    arrays: Mapping[int, tuple[np.ndarray, np.ndarray]],
    jobs: Sequence[Job],
    width: int,
    *,
    address: str | None = None,
    progress: Callable[[int], None] | None = None,
    runtime_env: dict | None = None,
    tasks_per_cpu: int = TASKS_PER_CPU,
) -> np.ndarray:
    """Counter rows for ``jobs``, as ``run_local`` returns them, computed on a Ray cluster.

    Connects to ``address`` (else ``RAY_ADDRESS``) unless Ray is already initialised in this
    process, in which case that connection is used and left open.
    """
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "engine='ray' needs Ray: pip install 'concerto-lab[ray]' (or pip install ray)"
        ) from None
    out = np.zeros((len(jobs), T_GPU + 2 * width), dtype=np.int64)
    if not jobs:
        return out
    connected_here = False
    pending = {}
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        if not address:
            raise ConfigError(
                "engine='ray' needs a running Ray cluster: pass address= (--address HOST:PORT, "
                "or ray://HOST:10001 for a remote client) or set RAY_ADDRESS"
            )
        if runtime_env is None:
            runtime_env = {"py_modules": [str(PACKAGE)],
                           "excludes": ["__pycache__", "*.nbi", "*.nbc"]}  # fmt: skip
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False,
                 logging_level="WARNING")  # fmt: skip
        connected_here = True
    try:
        task = ray.remote(num_cpus=1, max_retries=2)(_task)
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        size = max(1, math.ceil(len(jobs) / (cpus * tasks_per_cpu)))
        refs = {}
        for node in sorted({j.node for j in jobs}):
            refs[node] = ray.put(arrays[node])  # once per node log
            mine = [k for k, j in enumerate(jobs) if j.node == node]
            for lo in range(0, len(mine), size):
                idx = mine[lo : lo + size]
                chunk = [_local(jobs[k]) for k in idx]
                pending[task.remote(refs[node], chunk, width)] = idx
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                idx = pending.pop(ref)
                stamp, rows = ray.get(ref)
                if stamp != KERNEL_STAMP:
                    raise ConfigError(
                        "the Ray workers run other concerto_lab kernel code than this driver; "
                        "ship this package with runtime_env={'py_modules': [...]} (the default) "
                        "or install the same version on the cluster"
                    )
                out[idx] = rows
                if progress is not None:
                    progress(sum(len(arrays[jobs[k].node][0]) for k in idx))
    except BaseException:
        for ref in pending:
            ray.cancel(ref)
        raise
    finally:
        if connected_here:
            ray.shutdown()  # disconnects this driver; the cluster keeps running
    return out


def _local(job: Job) -> Job:
    """The job as a task sees it: its node's trace is the task's only trace (index 0)."""
    return Job(0, job.control, job.gpus, job.snapshots, job.registry, job.policy, job.headroom,
               job.fixes)  # fmt: skip
