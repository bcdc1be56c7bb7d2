"""The jitted replay: Concerto 0.1's decision procedure and state changes over a whole trace.

Layout of the state (dtypes in ``model/dtypes.py``):

* ``gpus``: one GPU_DTYPE record per GPU (counters mutated in place).
* ``entries``: a dense, unordered table of resident copies. A GPU's list order is ascending
  ``seq``; removal swaps the last row into the hole, so no row ever has to shift.
* ``primary[m]``: the row a request for ``m`` would be routed to (first GPU in index order,
  earliest copy on it), or -1. Kept current on every load and removal, it makes a hit a few
  loads and stores: no search, no Python.
* ``counters``: ``[n_entries, next_seq, n_evictions, next_control]``, so a trace can be
  replayed in chunks (progress bars, widgets) with the state carried across calls.

Section numbers refer to the oracle README; ``concerto_lab.reference`` is the readable twin.
"""

import numpy as np
from numba import njit

from ..model.dtypes import (
    EV_CRASH,
    EV_HEALTH,
    EV_RESET,
    FIX_PIN_REASON,
    FIX_ROUTE_HEALTHY_COPY,
    LOAD,
    REJECT_NO_FIT,
    REJECT_PINNED,
    REJECT_UNKNOWN,
    ROUTE,
    UNHEALTHY,
)
from .policies import eviction_key

N_ENTRIES, NEXT_SEQ, N_EVICTIONS, NEXT_CONTROL = 0, 1, 2, 3
INT64_MAX = 2**63 - 1  # no GPU holds this much, so a saturated need never fits


@njit(cache=True)
def rebuild_primary(entries, n_entries, primary):
    primary[:] = -1
    for s in range(n_entries):
        m = entries[s].model
        p = primary[m]
        if p < 0:
            primary[m] = s
        else:
            g, pg = entries[s].gpu, entries[p].gpu
            if g < pg or (g == pg and entries[s].seq < entries[p].seq):
                primary[m] = s


@njit(cache=True)
def remove_model(m, entries, counters, gpus, primary):
    """Evict or crash: every copy of ``m`` on every GPU goes and its memory comes back (Q5)."""
    n = counters[N_ENTRIES]
    s = 0
    while s < n:
        if entries[s].model == m:
            g = entries[s].gpu
            v = entries[s].vram
            gpus[g].used = max(0, gpus[g].used - v)
            gpus[g].available += v
            n -= 1
            if s != n:
                entries[s] = entries[n]
                moved = entries[s].model
                if primary[moved] == n:
                    primary[moved] = s
        else:
            s += 1
    counters[N_ENTRIES] = n
    primary[m] = -1


@njit(cache=True)
def _grow(a, need):
    if need <= a.shape[0]:
        return a
    b = np.empty(max(need, 2 * a.shape[0]), dtype=a.dtype)
    b[: a.shape[0]] = a
    return b


@njit(cache=True)
def _append(m, g, t, vram, entries, counters, gpus, primary):
    s = counters[N_ENTRIES]
    e = entries[s]
    e.model = m
    e.gpu = g
    e.vram = vram
    e.last_t = t
    e.count = 1
    e.seq = counters[NEXT_SEQ]
    counters[NEXT_SEQ] += 1
    counters[N_ENTRIES] = s + 1
    gpus[g].used += vram
    gpus[g].available = max(0, gpus[g].available - vram)
    p = primary[m]
    if p < 0 or g < entries[p].gpu:
        primary[m] = s


@njit(cache=True)
def _first_usable_copy(m, entries, n, gpus):
    best = -1
    for s in range(n):
        if entries[s].model == m and gpus[entries[s].gpu].health != UNHEALTHY:
            if best < 0:
                best = s
            else:
                g, bg = entries[s].gpu, entries[best].gpu
                if g < bg or (g == bg and entries[s].seq < entries[best].seq):
                    best = s
    return best


@njit(cache=True)
def _plan_on_gpu(g, deficit, t, entries, n, registry, policy, cand, keys, victims):
    """Step 4 on one GPU: greedy victims in policy order; returns their count, or -1."""
    nc = 0
    total = 0
    for s in range(n):
        e = entries[s]
        if e.gpu == g and not registry[e.model].pin:
            cand[nc] = s
            keys[nc] = eviction_key(policy, e.vram, e.last_t, e.count, t)
            total += e.vram
            nc += 1
    if total < deficit:
        return -1
    freed = 0
    nv = 0
    while freed < deficit:
        # The next victim: smallest key, ties to the earlier copy in list (seq) order.
        best = -1
        for j in range(nc):
            if cand[j] < 0:
                continue
            if best < 0 or keys[j] < keys[best] or (
                keys[j] == keys[best] and entries[cand[j]].seq < entries[cand[best]].seq
            ):
                best = j
        s = cand[best]
        cand[best] = -1
        victims[nv] = entries[s].model
        nv += 1
        freed += entries[s].vram
    return nv


@njit(cache=True)
def _reject_kind(need, entries, n, gpus, registry, fixes):
    """Step 5: the pin reason whenever a pinned copy sits on a usable GPU (quirk Q7)."""
    if fixes & FIX_PIN_REASON:
        for g in range(gpus.shape[0]):
            if gpus[g].health == UNHEALTHY:
                continue
            has_pin = False
            resident = 0
            for s in range(n):
                if entries[s].gpu == g:
                    resident += entries[s].vram
                    if registry[entries[s].model].pin:
                        has_pin = True
            if has_pin and gpus[g].available + resident >= need:
                return REJECT_PINNED
        return REJECT_NO_FIT
    for s in range(n):
        if registry[entries[s].model].pin and gpus[entries[s].gpu].health != UNHEALTHY:
            return REJECT_PINNED
    return REJECT_NO_FIT


@njit(cache=True)
def _apply_control(c, control, gpus, snapshots, entries, counters, primary):
    kind = control[c].kind
    if kind == EV_HEALTH:
        gpus[control[c].arg].health = control[c].val
    elif kind == EV_CRASH:
        remove_model(control[c].arg, entries, counters, gpus, primary)
    elif kind == EV_RESET:
        gpus[:] = snapshots[control[c].val]
        counters[N_ENTRIES] = 0
        primary[:] = -1


@njit(cache=True)
def replay_chunk(
    req_t, req_m, start, stop, control, gpus, snapshots, registry, policy, headroom, fixes,
    entries, counters, ev_req, ev_model, out_kind, out_gpu,
):  # fmt: skip
    """Replay requests ``start:stop``; returns the (possibly grown) entries and eviction arrays.

    Control events with ``pos < stop`` are applied before their request; those at
    ``pos == len(req_t)`` are applied when ``stop`` reaches the end.
    """
    n_gpus = gpus.shape[0]
    primary = np.empty(registry.shape[0], dtype=np.int32)
    rebuild_primary(entries, counters[N_ENTRIES], primary)
    order = np.empty(n_gpus, dtype=np.int64)
    cap = entries.shape[0]
    cand = np.empty(cap, dtype=np.int64)
    keys = np.empty(cap, dtype=np.float64)
    victims = np.empty(cap, dtype=np.int32)
    n_control = control.shape[0]
    c = counters[NEXT_CONTROL]

    for i in range(start, stop):
        while c < n_control and control[c].pos <= i:
            _apply_control(c, control, gpus, snapshots, entries, counters, primary)
            c += 1
        m = req_m[i]
        t = req_t[i]

        # Step 1: the first GPU holding a copy decides; an Unhealthy one sends us on (Q1).
        s = primary[m]
        if s >= 0:
            g = entries[s].gpu
            if gpus[g].health == UNHEALTHY and fixes & FIX_ROUTE_HEALTHY_COPY:
                s = _first_usable_copy(m, entries, counters[N_ENTRIES], gpus)
                g = entries[s].gpu if s >= 0 else g
            if s >= 0 and gpus[g].health != UNHEALTHY:
                entries[s].last_t = t
                entries[s].count += 1
                out_kind[i] = ROUTE
                out_gpu[i] = g
                continue

        # Step 2: an id outside the registry never reaches placement.
        if not registry[m].known:
            out_kind[i] = REJECT_UNKNOWN
            out_gpu[i] = -1
            continue
        vram = registry[m].vram
        # Saturate: two 4 EiB sizes would pass int64 and wrap negative (then everything "fits").
        need = vram + headroom if vram <= INT64_MAX - headroom else INT64_MAX
        n = counters[N_ENTRIES]

        # Step 3: direct placement: Healthy first, then most available, then lowest index.
        best = -1
        best_h = 0
        best_a = 0
        for g in range(n_gpus):
            h = gpus[g].health
            a = gpus[g].available
            if h != UNHEALTHY and a >= need:
                if best < 0 or h < best_h or (h == best_h and a > best_a):
                    best, best_h, best_a = g, h, a
        nv = 0
        if best < 0:
            # Step 4: GPUs by most available (ties to lower index), health ignored.
            k = 0
            for g in range(n_gpus):
                if gpus[g].health == UNHEALTHY:
                    continue
                j = k
                while j > 0 and gpus[order[j - 1]].available < gpus[g].available:
                    order[j] = order[j - 1]
                    j -= 1
                order[j] = g
                k += 1
            for j in range(k):
                g = order[j]
                nv = _plan_on_gpu(
                    g, need - gpus[g].available, t, entries, n, registry, policy,
                    cand, keys, victims,
                )  # fmt: skip
                if nv >= 0:
                    best = g
                    break
            if best < 0:
                # Step 5.
                out_kind[i] = _reject_kind(need, entries, n, gpus, registry, fixes)
                out_gpu[i] = -1
                continue

        # Load on `best`: evict by id everywhere, in plan order, then append the new copy.
        e0 = counters[N_EVICTIONS]
        if e0 + nv > ev_req.shape[0]:
            ev_req = _grow(ev_req, e0 + nv)
            ev_model = _grow(ev_model, e0 + nv)
        for j in range(nv):
            ev_req[e0 + j] = i
            ev_model[e0 + j] = victims[j]
            if primary[victims[j]] >= 0:  # a repeated id (Q4) is already gone
                remove_model(victims[j], entries, counters, gpus, primary)
        counters[N_EVICTIONS] = e0 + nv
        if counters[N_ENTRIES] == entries.shape[0]:
            entries = _grow(entries, entries.shape[0] + 1)
            cap = entries.shape[0]
            cand = np.empty(cap, dtype=np.int64)
            keys = np.empty(cap, dtype=np.float64)
            victims = np.empty(cap, dtype=np.int32)
        _append(m, best, t, vram, entries, counters, gpus, primary)
        out_kind[i] = LOAD
        out_gpu[i] = best

    if stop == req_t.shape[0]:
        while c < n_control:
            _apply_control(c, control, gpus, snapshots, entries, counters, primary)
            c += 1
    counters[NEXT_CONTROL] = c
    return entries, ev_req, ev_model


__all__ = ["replay_chunk", "remove_model", "rebuild_primary"]
