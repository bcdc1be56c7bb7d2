"""Seeded random scenarios in the oracle format (``tests/oracle/README.md`` section 1).

One generator for the differential tests (kernel vs reference), the property tests and the
benchmarks. It aims at the corners where a second implementation drifts: mixed GPU sizes and
healths, zero-byte and over-sized models, sizes above 2**32, pins, Zipf popularity, unknown and
case-variant ids, health flips, crashes, equal timestamps, all three policies and headroom 0.

``rng`` is any ``random.Random``, including the ones hypothesis's ``st.randoms()`` draws, so
property tests drive the same code. Only ``random``, ``randint`` and ``choice`` are called.
"""

from __future__ import annotations

import bisect
import random

POLICIES = ("lru", "lfu", "size_weighted_lru")
HEALTHS = ("Healthy", "Degraded", "Unhealthy")
GB, GIB = 10**9, 2**30
#: Largest size the toolkit accepts (``concerto_lab.model.sizes.MAX_SIZE``, 4 EiB).
MAX_SIZE = 2**62

_GPU_PALETTE = (16 * GB, 24 * GB, 40 * GB, 48 * GB, 80 * GB, 16 * GIB, 24 * GIB, 80 * GIB)
#: Start times: zero, just below and above 2**31 and 2**32, and present-day epoch milliseconds.
_T0 = (0, 2**31 - 5_000, 2**32 + 17, 1_733_184_006_854, 1_741_064_767_000)
#: ... and, for ``huge``, where float64 stops holding every millisecond, and near the top.
_T0_HUGE = (2**53 - 5_000, 2**62)


def _weighted(rng, items, weights):
    x = rng.random() * sum(weights)
    for item, w in zip(items, weights):
        if x < w:
            return item
        x -= w
    return items[-1]


def _gpu_sizes(rng, n: int, huge: bool) -> list[int]:
    if huge:  # near the int64 ceiling: totals in [2**58, 2**62]
        return [rng.randint(2**58, MAX_SIZE) for _ in range(n)]
    if rng.random() < 0.3:  # all equal: exercises the index tie-breaks
        return [rng.choice(_GPU_PALETTE)] * n
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.6:
            out.append(rng.choice(_GPU_PALETTE))
        elif r < 0.95:
            out.append(rng.randint(4 * GB, 100 * GB))
        else:
            out.append(rng.randint(1, 4096))  # a tiny card: only zero-byte models fit
    return out


def _model_size(rng, gpus: list[int], headroom: int, sizes_so_far: list[int]) -> int:
    big = max(gpus)
    r = rng.random()
    if r < 0.05:
        return 0
    if r < 0.09:
        return rng.randint(1, 2048)
    if r < 0.14:
        return min(MAX_SIZE, big + rng.randint(1, max(1, big // 4)))  # never fits anywhere
    if r < 0.19:
        return max(0, rng.choice(gpus) - headroom - rng.randint(0, 1))  # exact fit / off by one
    if r < 0.26 and sizes_so_far:
        return rng.choice(sizes_so_far)  # equal sizes tie under size_weighted_lru
    if r < 0.32:
        return rng.randint(1, 2**32)  # below and around 2**32
    ref = rng.choice(gpus)
    return rng.randint(max(1, ref // 50), max(1, (ref * 7) // 10))


def _zipf_cdf(n: int, s: float) -> list[float]:
    acc, out = 0.0, []
    for k in range(1, n + 1):
        acc += 1.0 / k**s
        out.append(acc)
    return out


def random_scenario(
    rng: random.Random,
    *,
    name: str = "random",
    policy: str | None = None,
    n_gpus: int | None = None,
    n_events: int | None = None,
    max_events: int = 120,
    whole_seconds: bool | None = None,
    headroom: int | None = None,
    huge: bool = False,
    description: str = "",
) -> dict:
    """One oracle-format scenario dict. Unset knobs are drawn from ``rng``.

    ``huge`` puts GPU and model sizes near 2**62 and start times beyond 2**32 ms, for the int64
    boundary tests; ``whole_seconds`` makes every timestamp a multiple of 1000 ms.
    """
    policy = policy or rng.choice(POLICIES)
    n_gpus = n_gpus or rng.randint(1, 8)
    whole_seconds = (rng.random() < 0.5) if whole_seconds is None else whole_seconds
    gpu_sizes = _gpu_sizes(rng, n_gpus, huge)
    gpus = [
        {"id": k, "memory_total_bytes": size,
         "health": _weighted(rng, HEALTHS, (0.75, 0.17, 0.08))}
        for k, size in enumerate(gpu_sizes)
    ]  # fmt: skip
    if headroom is None:
        r = rng.random()
        if huge and r < 0.15:
            headroom = rng.choice((MAX_SIZE, rng.randint(0, MAX_SIZE)))  # sums may pass int64
        elif r < 0.35:
            headroom = 0
        elif r < 0.6:
            headroom = GB
        elif r < 0.7:
            headroom = 2 * GIB
        else:
            headroom = rng.randint(0, max(gpu_sizes) // 8)

    n_models = 0 if rng.random() < 0.03 else rng.randint(1, 20)
    p_pin = rng.choice((0.0, 0.0, 0.1, 0.3))
    sizes: list[int] = []
    models = []
    for k in range(n_models):
        sizes.append(_model_size(rng, gpu_sizes, headroom, sizes))
        models.append({"id": f"m{k:02d}", "vram_required_bytes": sizes[-1],
                       "pin": rng.random() < p_pin})  # fmt: skip
    ids = [m["id"] for m in models]
    unknown = ["ghost", "M00", "m00 ", "m0", "m00-instruct", ""]  # near misses are unknown too

    # Zipf popularity over a shuffled registry order.
    popular = list(ids)
    for k in range(len(popular) - 1, 0, -1):
        j = rng.randint(0, k)
        popular[k], popular[j] = popular[j], popular[k]
    cdf = _zipf_cdf(len(popular), 0.3 + 1.5 * rng.random()) if popular else []

    p_health = rng.choice((0.0, 0.01, 0.05))
    p_crash = rng.choice((0.0, 0.01, 0.05))
    p_unknown = rng.choice((0.0, 0.02, 0.1)) if popular else 1.0
    p_same = rng.choice((0.0, 0.1, 0.4))
    mean_gap = rng.choice((300, 2_000, 30_000))
    n_events = n_events if n_events is not None else rng.randint(1, max_events)

    t = rng.choice(_T0 + _T0_HUGE if huge else _T0) + (rng.randint(0, 2**40) if huge else 0)
    if whole_seconds:
        t -= t % 1000
    events = []
    for _ in range(n_events):
        if rng.random() >= p_same:
            gap = rng.randint(1, 2 * mean_gap)
            if rng.random() < 0.03:
                gap += rng.randint(0, 10**8)  # a quiet night: huge staleness
            t += (gap // 1000 + 1) * 1000 if whole_seconds else gap
        r = rng.random()
        if r < p_health:
            events.append({"t_ms": t, "kind": "health", "gpu": rng.randint(0, n_gpus - 1),
                           "health": _weighted(rng, HEALTHS, (0.5, 0.2, 0.3))})  # fmt: skip
        elif r < p_health + p_crash:
            victim = rng.choice(ids) if ids and rng.random() < 0.9 else rng.choice(unknown)
            events.append({"t_ms": t, "kind": "crash", "model": victim})
        else:
            if rng.random() < p_unknown:
                model = rng.choice(unknown)
            else:
                model = popular[bisect.bisect_left(cdf, rng.random() * cdf[-1])]
            events.append({"t_ms": t, "kind": "request", "model": model})
    return {
        "name": name,
        "description": description or f"random scenario: policy={policy} gpus={n_gpus} "
        f"models={n_models} events={n_events} whole_seconds={whole_seconds} huge={huge}",
        "config": {"eviction_policy": policy, "vram_headroom_bytes": headroom},
        "gpus": gpus,
        "models": models,
        "events": events,
    }


def scenario_for_seed(seed: int, **knobs) -> dict:
    """The scenario for ``seed``: the same dict on every machine and Python version."""
    sc = random_scenario(random.Random(seed), name=f"gen_s{seed}", **knobs)
    sc["description"] = f"seed={seed} " + sc["description"]
    return sc


def scenarios(first_seed: int, count: int, **knobs):
    """``count`` scenarios for consecutive seeds (what the differential test and benchmarks use)."""
    for seed in range(first_seed, first_seed + count):
        yield scenario_for_seed(seed, **knobs)
