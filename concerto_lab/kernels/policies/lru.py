"""LRU: the entry requested longest ago goes first (millisecond timestamps, no rounding)."""

from numba import njit


@njit(inline="always", cache=True)
def key(vram, last_t, count, t):
    # Relative to now: exact in float64 for any epoch while the trace spans < 2**53 ms; absolute
    # epoch ms above 2**53 would round 2 ms apart into ties.
    return float(last_t - t)
