"""LFU: the copy with the fewest requests goes first; counts belong to a copy, never to a model."""

from numba import njit


@njit(inline="always", cache=True)
def key(vram, last_t, count, t):
    return float(count)
