"""Every numeric code and array layout shared by the kernels and the Python side.

One place for all of them, so the kernel, the reference and the result tables can never disagree
on what ``2`` means. Bytes and times are int64 everywhere (sizes above 2**32, epoch milliseconds).
"""

import numpy as np

# --- GPU health (ordered: lower is better, as the placement tie-break wants) -----------------
HEALTHY, DEGRADED, UNHEALTHY = 0, 1, 2
HEALTH_NAMES = ("Healthy", "Degraded", "Unhealthy")

# --- eviction policies -------------------------------------------------------------------------
LRU, LFU, SIZE_WEIGHTED_LRU = 0, 1, 2
POLICY_NAMES = ("lru", "lfu", "size_weighted_lru")

# --- per-request decision kinds (one uint8 per request) ----------------------------------------
ROUTE, LOAD, REJECT_UNKNOWN, REJECT_PINNED, REJECT_NO_FIT = 0, 1, 2, 3, 4
DECISION_NAMES = ("route", "load", "reject", "reject", "reject")
REASON_KINDS = (None, None, "unknown", "pinned", "no_fit")

# --- control events interleaved with requests --------------------------------------------------
EV_HEALTH, EV_CRASH, EV_RESET = 0, 1, 2

# --- opt-in fixes of reference quirks (bit flags; 0 = exact reference behaviour) ---------------
FIX_ROUTE_HEALTHY_COPY = 1  # Q1: route to the first copy on a non-Unhealthy GPU
FIX_PIN_REASON = 2  # Q7: pin reason only when a pinned entry sits on a GPU that could hold M
QUIRK_FIXES = {"route_healthy_copy": FIX_ROUTE_HEALTHY_COPY, "pin_reason": FIX_PIN_REASON}

#: One GPU: counters kept separately, as the reference does (``available`` is not total - used
#: once foreign usage or clamping is involved).
GPU_DTYPE = np.dtype(
    [("total", np.int64), ("used", np.int64), ("available", np.int64), ("health", np.int8)],
    align=True,
)

#: One resident copy. The GPU's list order is the order of ``seq`` (loads append, removals keep
#: relative order), so the table itself can stay unordered and dense.
ENTRY_DTYPE = np.dtype(
    [
        ("model", np.int32),
        ("gpu", np.int32),
        ("vram", np.int64),
        ("last_t", np.int64),
        ("count", np.int64),
        ("seq", np.int64),
    ],
    align=True,
)

#: One model code: size, pin and whether the id is in the registry at all.
REGISTRY_DTYPE = np.dtype([("vram", np.int64), ("pin", np.bool_), ("known", np.bool_)], align=True)

#: Control events, applied just before request ``pos`` (``pos == n`` means after the last one).
CONTROL_DTYPE = np.dtype(
    [("pos", np.int64), ("t", np.int64), ("kind", np.int8), ("arg", np.int32), ("val", np.int64)],
    align=True,
)

#: Request trace columns.
TIME_DTYPE = np.int64  # UTC epoch milliseconds
CODE_DTYPE = np.int32  # index into the trace's name dictionary
