"""LRU: the entry requested longest ago goes first (millisecond timestamps, no rounding)."""

from numba import njit


@njit(inline="always", cache=True)
def key(vram, last_t, count, t):
    return float(last_t)  # epoch ms stay exact in float64 up to 2**53
