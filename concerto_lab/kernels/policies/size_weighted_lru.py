"""Size-weighted LRU: the largest ``staleness_s * vram`` goes first (quirk Q11).

Staleness is whole seconds since the copy's last request, floored and clamped to at least 1. The
reference reads the wall clock here; a replay uses the request's own time ``t``.
"""

from numba import njit


@njit(inline="always", cache=True)
def key(vram, last_t, count, t):
    staleness_s = max(1, (t - last_t) // 1000)
    return -(float(staleness_s) * float(vram))  # keys ascend; the highest score is evicted first
