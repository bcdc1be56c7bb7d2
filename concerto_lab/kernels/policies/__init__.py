"""Eviction orderings: one small module per policy, each a jitted ``key(vram, last_t, count, t)``.

The kernel sorts a GPU's non-pinned copies by ascending key, ties by list order (load sequence),
so a policy is only its key. Adding one means a module here and a line in ``eviction_key``.
"""

from numba import njit

from ...model.dtypes import LFU, LRU, POLICY_NAMES, SIZE_WEIGHTED_LRU
from . import lfu, lru, size_weighted_lru

_lru, _lfu, _swlru = lru.key, lfu.key, size_weighted_lru.key


@njit(inline="always", cache=True)
def eviction_key(policy, vram, last_t, count, t):
    if policy == LRU:
        return _lru(vram, last_t, count, t)
    if policy == LFU:
        return _lfu(vram, last_t, count, t)
    return _swlru(vram, last_t, count, t)


def policy_code(name: str) -> int:
    """The kernel's code for a policy name as written in ``concerto.toml``."""
    try:
        return POLICY_NAMES.index(name)
    except ValueError:
        raise ValueError(
            f"unknown eviction policy {name!r}; expected one of {', '.join(POLICY_NAMES)}"
        ) from None


__all__ = ["eviction_key", "policy_code", "LRU", "LFU", "SIZE_WEIGHTED_LRU"]
