"""The jitted replay: Concerto 0.1's decision procedure and state changes over a whole trace.

Layout of the state (dtypes in ``model/dtypes.py``):

* ``gpus``: one GPU_DTYPE record per GPU (counters mutated in place).
* ``entries``: a dense, unordered table of resident copies; a GPU's list order is ascending
  ``seq``. Removal swaps the last row into the hole, so rows never shift.
* ``counters``: ``[n_entries, next_seq, n_evictions, next_control]``, so a trace can be
  replayed in chunks (progress bars, widgets) with the state carried across calls.

Each call rebuilds three small indexes from that state (``Index`` below), so the carried state
stays the plain table while the hot paths never scan it:

* ``primary[m]``: the row a request for ``m`` would be routed to (first GPU in index order,
  earliest copy on it), or -1: a hit is a few loads and stores.
* ``slots[g, :nslots[g]]``: GPU ``g``'s rows in list order, so eviction planning reads only that
  GPU's copies and ties fall to the earlier copy by scanning order alone.
* ``copies[m]``: resident copies of ``m``, so evicting the usual single copy is direct;
  ``pinned[g]``: pinned copies on ``g``, so a reject reason needs no scan.

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
    HEALTHY,
    LOAD,
    REJECT_NO_FIT,
    REJECT_PINNED,
    REJECT_UNKNOWN,
    ROUTE,
    UNHEALTHY,
)
from .policies import eviction_key

N_ENTRIES, NEXT_SEQ, N_EVICTIONS, NEXT_CONTROL = 0, 1, 2, 3
#: Index cast for hot paths: an unsigned index compiles without negative-index wrap-around code.
#: Only for values that are valid positions by construction, and never in arithmetic (numba
#: would mix signed and unsigned into float64).
U = np.uint64
INT64_MAX = 2**63 - 1  # no GPU holds this much, so a saturated need never fits


@njit(cache=True)
def rebuild_index(entries, n, registry, primary, copies, slots, nslots, pinned):
    """Derive the lookup indexes from the entry table (start of every call, and after a reset)."""
    primary[:] = -1
    copies[:] = 0
    nslots[:] = 0
    pinned[:] = 0
    seq = np.empty(n, dtype=np.int64)
    for s in range(n):
        seq[s] = entries[s].seq
    order = np.argsort(seq)  # list order on every GPU at once
    for s in order:
        e = entries[s]
        m, g = e.model, e.gpu
        slots[g, nslots[g]] = s
        nslots[g] += 1
        copies[m] += 1
        if registry[m].pin:
            pinned[g] += 1
        p = primary[m]
        if p < 0 or g < entries[p].gpu:
            primary[m] = s


@njit(cache=True, inline="always")
def _unlink(s, g, slots, nslots):
    """Close row ``s``'s place in GPU ``g``'s list; the entries after it keep their order."""
    k = nslots[U(g)] - 1
    prev = slots[U(g), U(k)]
    while prev != s:
        k -= 1
        cur = slots[U(g), U(k)]
        slots[U(g), U(k)] = prev
        prev = cur
    nslots[U(g)] -= 1


@njit(cache=True, inline="always")
def remove_model(m, entries, counters, gpus, primary, copies, slots, nslots, pinned, registry,
                 free):  # fmt: skip
    """Evict or crash: every copy of ``m`` on every GPU goes and its memory comes back (Q5)."""
    if copies[U(m)] == 1:
        s = primary[U(m)]
        g = entries[U(s)].gpu
        v = entries[U(s)].vram
        gpus[U(g)].used = max(0, gpus[U(g)].used - v)
        gpus[U(g)].available += v
        _unlink(s, g, slots, nslots)
        if registry[U(m)].pin:
            pinned[U(g)] -= 1
        free[U(counters[N_ENTRIES] - 1)] = s
        counters[N_ENTRIES] -= 1
    elif copies[m] > 1:  # duplicate copies (quirks Q1, Q3, Q6): rare, so every list is read
        pin = registry[m].pin
        for g in range(gpus.shape[0]):
            kept = 0
            for k in range(nslots[g]):
                s = slots[g, k]
                if entries[s].model == m:
                    v = entries[s].vram
                    gpus[g].used = max(0, gpus[g].used - v)
                    gpus[g].available += v
                    if pin:
                        pinned[g] -= 1
                    free[counters[N_ENTRIES] - 1] = s
                    counters[N_ENTRIES] -= 1
                else:
                    slots[g, kept] = s
                    kept += 1
            nslots[g] = kept
    copies[U(m)] = 0
    primary[U(m)] = -1


@njit(cache=True)
def _grow(a, need):
    if need <= a.shape[0]:
        return a
    b = np.empty(max(need, 2 * a.shape[0]), dtype=a.dtype)
    b[: a.shape[0]] = a
    return b


@njit(cache=True, inline="always")
def _append(m, g, t, vram, entries, counters, gpus, primary, copies, slots, nslots, pinned,
            registry, free):  # fmt: skip
    n = counters[N_ENTRIES]
    s = free[U(n)]
    e = entries[U(s)]
    e.model = m
    e.gpu = g
    e.vram = vram
    e.last_t = t
    e.count = 1
    e.seq = counters[NEXT_SEQ]
    counters[NEXT_SEQ] += 1
    counters[N_ENTRIES] = n + 1
    gpus[U(g)].used += vram
    gpus[U(g)].available = max(0, gpus[U(g)].available - vram)
    slots[U(g), U(nslots[U(g)])] = s
    nslots[U(g)] += 1
    copies[U(m)] += 1
    if registry[U(m)].pin:
        pinned[U(g)] += 1
    p = primary[U(m)]
    if p < 0 or g < entries[U(p)].gpu:
        primary[U(m)] = s


@njit(cache=True, inline="always")
def _first_usable_copy(m, entries, gpus, slots, nslots):
    for g in range(gpus.shape[0]):
        if gpus[g].health != UNHEALTHY:
            for k in range(nslots[g]):
                if entries[slots[g, k]].model == m:
                    return slots[g, k]
    return -1


@njit(cache=True, inline="always")
def _plan_on_gpu(g, deficit, t, entries, slots, nslots, pinned, registry, policy, cand, keys,
                 victims):  # fmt: skip
    """Step 4 on one GPU: greedy victims in policy order; returns their count, or -1.

    Candidates are read in list order and a later one must have a strictly smaller key to win,
    which is the stable sort's tie-break without sorting. The first victim comes out of the
    same pass; more passes run only while the deficit is still open.
    """
    nc = 0
    total = 0
    best = -1
    best_key = 0.0
    check_pins = pinned[g] > 0
    for k in range(nslots[g]):
        s = slots[U(g), k]
        e = entries[U(s)]
        if check_pins and registry[U(e.model)].pin:
            continue
        key = eviction_key(policy, e.vram, e.last_t, e.count, t)
        if best < 0 or key < best_key:
            best, best_key = nc, key
        cand[nc] = s
        keys[nc] = key
        total += e.vram
        nc += 1
    if total < deficit:
        return -1
    s = cand[best]
    cand[best] = -1
    victims[0] = entries[U(s)].model
    freed = entries[U(s)].vram
    nv = 1
    while freed < deficit:
        best = 0
        while cand[best] < 0:
            best += 1
        for j in range(best + 1, nc):
            if cand[j] >= 0 and keys[j] < keys[best]:
                best = j
        s = cand[best]
        cand[best] = -1
        victims[nv] = entries[s].model
        nv += 1
        freed += entries[s].vram
    return nv


@njit(cache=True, inline="always")
def _reject_kind(need, entries, gpus, slots, nslots, pinned, fixes):
    """Step 5: the pin reason whenever a pinned copy sits on a usable GPU (quirk Q7)."""
    for g in range(gpus.shape[0]):
        if gpus[g].health == UNHEALTHY or pinned[g] == 0:
            continue
        if not fixes & FIX_PIN_REASON:
            return REJECT_PINNED
        resident = 0
        for k in range(nslots[g]):
            resident += entries[slots[g, k]].vram
        if gpus[g].available + resident >= need:
            return REJECT_PINNED
    return REJECT_NO_FIT


@njit(cache=True, inline="always")
def _apply_control(c, control, gpus, snapshots, entries, counters, primary, copies, slots,
                   nslots, pinned, registry, free):  # fmt: skip
    kind = control[c].kind
    if kind == EV_HEALTH:
        gpus[control[c].arg].health = control[c].val
    elif kind == EV_CRASH:
        remove_model(control[c].arg, entries, counters, gpus, primary, copies, slots, nslots,
                     pinned, registry, free)  # fmt: skip
    elif kind == EV_RESET:
        snap = control[c].val
        for g in range(gpus.shape[0]):
            gpus[g] = snapshots[snap, g]
        counters[N_ENTRIES] = 0
        primary[:] = -1
        copies[:] = 0
        nslots[:] = 0
        pinned[:] = 0
        for k in range(free.shape[0]):
            free[k] = k


@njit(cache=True, _nrt=False)
def _run(
    i, stop, req_t, req_m, control, gpus, snapshots, registry, policy, headroom, fixes,
    entries, counters, ev_req, ev_model, out_kind, out_gpu,
    primary, copies, slots, nslots, pinned, free, tried, cand, keys, victims,
):  # fmt: skip
    """The request loop. Returns ``stop``, or the first request whose load needs bigger arrays
    (nothing of that request is applied yet; ``replay_chunk`` grows them and calls again).

    No array is created or reassigned in here, so the loop runs without reference counting
    (numba's ``_nrt=False``; an allocation added here fails to compile instead of leaking).
    With reference counting, the increments and decrements numba leaves around the inlined
    helpers make loads about 1.8x slower (measured; no public option removes them).
    """
    n_gpus = gpus.shape[0]
    cap = entries.shape[0]
    n_control = control.shape[0]
    c = counters[NEXT_CONTROL]
    next_pos = control[c].pos if c < n_control else stop

    while i < stop:
        while i >= next_pos and c < n_control:
            _apply_control(c, control, gpus, snapshots, entries, counters, primary, copies,
                           slots, nslots, pinned, registry, free)  # fmt: skip
            c += 1
            next_pos = control[c].pos if c < n_control else stop

        # Routes, up to the next control event, in a loop of their own: its few live values
        # stay in registers, where the whole loop body below would spill them.
        end = min(next_pos, stop)
        # Indexes are unsigned here, so no negative-index wrap-around code is emitted (every
        # index is a valid position by construction).
        while i < end:
            u = np.uint64(i)
            s = primary[np.uint64(req_m[u])]
            if s < 0:
                break
            r = np.uint64(s)
            g = entries[r].gpu
            if gpus[np.uint64(g)].health == UNHEALTHY:
                break
            entries[r].last_t = req_t[u]
            entries[r].count += 1
            out_kind[u] = ROUTE
            out_gpu[u] = g
            i += 1
        if i == end:
            continue

        m = req_m[U(i)]
        t = req_t[U(i)]

        # Step 1: the first GPU holding a copy decides; an Unhealthy one sends us on (Q1).
        s = primary[U(m)]
        if s >= 0:
            g = entries[U(s)].gpu
            if gpus[U(g)].health == UNHEALTHY and fixes & FIX_ROUTE_HEALTHY_COPY:
                s = _first_usable_copy(m, entries, gpus, slots, nslots)
                g = entries[s].gpu if s >= 0 else g
            if s >= 0 and gpus[g].health != UNHEALTHY:
                entries[s].last_t = t
                entries[s].count += 1
                out_kind[i] = ROUTE
                out_gpu[i] = g
                i += 1
                continue

        # Step 2: an id outside the registry never reaches placement.
        if not registry[U(m)].known:
            out_kind[i] = REJECT_UNKNOWN
            out_gpu[i] = -1
            i += 1
            continue
        vram = registry[U(m)].vram
        # Saturate: two 4 EiB sizes would pass int64 and wrap negative (then everything "fits").
        need = vram + headroom if vram <= INT64_MAX - headroom else INT64_MAX

        # Step 3: direct placement: Healthy first, then most available, then lowest index.
        # The same pass finds step 4's first GPU (most available, health ignored).
        best = -1
        best_h = 0
        best_a = 0
        top = -1
        top_a = 0
        for g in range(n_gpus):
            h = gpus[g].health
            a = gpus[g].available
            if h != UNHEALTHY:
                if a >= need and (best < 0 or h < best_h or (h == best_h and a > best_a)):
                    best, best_h, best_a = g, h, a
                if top < 0 or a > top_a:
                    top, top_a = g, a
        nv = 0
        if best < 0 and top >= 0:
            # Step 4: GPUs by most available (ties to lower index), health ignored. The first
            # try nearly always succeeds, so the rest of the order is found only when needed.
            g = top
            while True:
                nv = _plan_on_gpu(
                    g, need - gpus[g].available, t, entries, slots, nslots, pinned, registry,
                    policy, cand, keys, victims,
                )  # fmt: skip
                if nv >= 0:
                    best = g
                    break
                if g == top:
                    tried[:] = False
                tried[g] = True
                g = -1
                for h in range(n_gpus):
                    if not tried[h] and gpus[h].health != UNHEALTHY:
                        if g < 0 or gpus[h].available > gpus[g].available:
                            g = h
                if g < 0:
                    break
        if best < 0:
            # Step 5.
            out_kind[i] = _reject_kind(need, entries, gpus, slots, nslots, pinned, fixes)
            out_gpu[i] = -1
            i += 1
            continue

        # Load on `best`: evict by id everywhere, in plan order, then append the new copy.
        e0 = counters[N_EVICTIONS]
        if e0 + nv > ev_req.shape[0] or counters[N_ENTRIES] == cap:
            break  # out of room: the caller grows the arrays and this request runs again
        for j in range(nv):
            ev_req[e0 + j] = i
            ev_model[e0 + j] = victims[j]
            if copies[U(victims[j])] > 0:  # a repeated id (Q4) is already gone
                remove_model(victims[j], entries, counters, gpus, primary, copies, slots, nslots,
                             pinned, registry, free)  # fmt: skip
        counters[N_EVICTIONS] = e0 + nv
        _append(m, best, t, vram, entries, counters, gpus, primary, copies, slots, nslots, pinned,
                registry, free)  # fmt: skip
        out_kind[i] = LOAD
        out_gpu[i] = best
        i += 1

    if i == req_t.shape[0]:
        while c < n_control:
            _apply_control(c, control, gpus, snapshots, entries, counters, primary, copies, slots,
                           nslots, pinned, registry, free)  # fmt: skip
            c += 1
    counters[NEXT_CONTROL] = c
    return i


@njit(cache=True)
def _compact(entries, n, slots, nslots):
    """The live rows, densely, GPU by GPU in list order: the carried state's plain layout."""
    dense = np.empty(max(entries.shape[0], 1), dtype=entries.dtype)
    r = 0
    for g in range(nslots.shape[0]):
        for k in range(nslots[g]):
            dense[r] = entries[slots[g, k]]
            r += 1
    assert r == n
    return dense


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
    n_models = registry.shape[0]
    primary = np.empty(n_models, dtype=np.int32)
    copies = np.empty(n_models, dtype=np.int32)
    nslots = np.empty(n_gpus, dtype=np.int32)
    pinned = np.empty(n_gpus, dtype=np.int32)
    tried = np.empty(n_gpus, dtype=np.bool_)
    i = start
    while True:
        cap = entries.shape[0]
        slots = np.empty((n_gpus, cap), dtype=np.int32)
        rebuild_index(entries, counters[N_ENTRIES], registry, primary, copies, slots, nslots,
                      pinned)  # fmt: skip
        free = np.arange(cap).astype(np.int32)  # rows free[n_entries:] are unused
        cand = np.empty(cap, dtype=np.int64)
        keys = np.empty(cap, dtype=np.float64)
        victims = np.empty(cap, dtype=np.int32)
        i = _run(
            i, stop, req_t, req_m, control, gpus, snapshots, registry, policy, headroom, fixes,
            entries, counters, ev_req, ev_model, out_kind, out_gpu,
            primary, copies, slots, nslots, pinned, free, tried, cand, keys, victims,
        )  # fmt: skip
        entries = _compact(entries, counters[N_ENTRIES], slots, nslots)
        if i == stop:
            return entries, ev_req, ev_model
        # Request i needs room for one more copy and up to `cap` evictions.
        e_need = counters[N_EVICTIONS] + cap
        ev_req = _grow(ev_req, e_need)
        ev_model = _grow(ev_model, e_need)
        if counters[N_ENTRIES] == cap:
            entries = _grow(entries, cap + 1)


__all__ = ["replay_chunk", "remove_model", "rebuild_index"]
