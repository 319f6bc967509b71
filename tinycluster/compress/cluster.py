"""Weight clustering of int8 weight tensors: each weight becomes an index into a small
int8 codebook (``ir.Clustering``), stored bit-packed by the emitter.

Algorithm
---------
int8 weights take at most 256 distinct values, so clustering works on the *histogram*
of the values, not on the weights themselves: 1-D weighted k-means with integer (int8)
centroids, solved **exactly** by dynamic programming over the sorted distinct values
(in 1-D the clusters of an optimal solution are contiguous runs of sorted values, and the
best integer centroid of a run is the rounded weighted mean, because the cost is a
parabola in the centroid). The cost is O(k n^2) for n <= 256 distinct values, a few
milliseconds per channel with numpy. The result is the global optimum, so it is
deterministic by construction: there is no random initialisation and no seed; ties are
broken towards the first (smallest) split point.

Error is measured in real units: weight ``q`` of output channel ``c`` stands for
``scale[c] * (q - zero_point[c])``, so replacing ``q`` by ``q'`` costs
``scale[c]^2 (q - q')^2``. Per-channel clustering has one scale per channel (minimising
the integer error is the same thing); per-tensor clustering of a per-channel-quantized
tensor weights every channel's histogram by its ``scale^2``.

Granularity
-----------
``per-channel``: one codebook of k entries per output channel (``handler.weight_channel_axis``);
``per-tensor``: one codebook for the tensor; ``shared`` (chosen by auto only): G codebooks
shared by the channels, each channel naming its codebook in a uint8 map
(``Clustering.codebook_of_channel``; see :func:`shared_codebooks`).

``auto`` picks, per layer, the candidate with the smallest footprint (packed indices +
codebook bytes + the shared map's n_channels bytes) whose error is *acceptable*:

    acceptable  <=>  rms <= max((1 + tolerance) * rms_pc, rms_int8)

where ``rms`` is the candidate's RMS clustering error in real units, ``rms_pc`` that of
per-channel codebooks (the most accurate candidate at the same index width) and
``rms_int8 = sqrt(mean over weights of scale^2 / 12)`` is the RMS rounding error the int8
quantization of the original float weights already made (uniform rounding noise). In words:
fewer codebooks are used when they cost at most ``tolerance`` (default 10 %, about 0.8 dB of
SNR) more RMS error than per-channel codebooks, or when their error is no larger than the
int8 rounding noise already in the model. Candidates in footprint order: per-tensor, shared
with G in ``SHARED_GROUPS`` (only G <= n_channels/2 whose footprint beats per-channel; the
largest G is tried first and the smallest acceptable one found by bisection, since the error
falls (roughly, not strictly) as G grows), per-channel (always acceptable). The index width is the requested one in
every candidate. The reason, with the error ratios, is recorded per layer, and the figures
of every candidate tried are kept under ``candidates``.

``lossless``: per layer the smallest index width that keeps every weight exact for each
layout, and the layout with the smallest footprint: per-channel needs k = max distinct
values of any channel, per-tensor k = distinct values of the tensor, and for each width b
between those two, exact shared codebooks (:func:`lossless_shared`: channels packed
first-fit into groups whose union of values fits in 2^b entries) need G codebooks + the
map. Ties go to fewer codebooks (less SRAM). ``--granularity per-channel|per-tensor``
restricts lossless to that layout. 8-bit clustering of an int8 model is always lossless (k = 256 covers
every int8 value), so the clustered model equals the original bit for bit.

Codebooks are sorted ascending and padded to exactly k entries (by repeating the last
real centroid; padding entries are never indexed), so any k in 2..256 works, including
2^n - 1. Index width is ``ceil(log2 k)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import TinyClusterError
from ..ir import Clustering, Graph, Tensor
from ..packing import packed_size

GRANULARITIES = ("per-channel", "per-tensor", "auto")
DEFAULT_TOLERANCE = 0.10


# ---------------------------------------------------------------------------------------------
# exact 1-D k-means with integer centroids
# ---------------------------------------------------------------------------------------------
def _segment_costs(v: np.ndarray, w: np.ndarray):
    """cost[i, j] (i <= j) of one cluster holding sorted values v[i..j] with its best integer
    centroid; centroid[i, j] that centroid. Entries with i > j are +inf."""
    n = v.size
    W = np.concatenate([[0.0], np.cumsum(w)])
    S1 = np.concatenate([[0.0], np.cumsum(w * v)])
    S2 = np.concatenate([[0.0], np.cumsum(w * v * v)])
    i = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    valid = j >= i
    jj = np.where(valid, j + 1, i + 1)
    sw = W[jj] - W[i]
    sv = S1[jj] - S1[i]
    sq = S2[jj] - S2[i]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(sw > 0, sv / np.where(sw > 0, sw, 1.0), v[i])
    c = np.rint(mean)
    cost = sq - 2.0 * c * sv + c * c * sw
    cost = np.maximum(cost, 0.0)  # float round-off
    cost = np.where(valid, cost, np.inf)
    return cost, c.astype(np.int64)


def kmeans_1d(values, weights, k: int):
    """Optimal weighted 1-D k-means with integer centroids.

    values: distinct integers, ascending; weights: positive, same length; k >= 1.
    Returns (centroids int64 [m], assignment int64 [n] into centroids, cost float) with
    m = min(k, n) ascending centroids; minimises sum_i w_i (v_i - c_{a(i)})^2 over all
    integer centroids exactly.
    """
    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    n = v.size
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0.0
    if k >= n:
        return v.astype(np.int64), np.arange(n, dtype=np.int64), 0.0
    # normalise weights (scale^2 weights can be ~1e-10): the argmin is unchanged
    wmax = float(w.max())
    wn = w / wmax if wmax > 0 else np.ones_like(w)
    cost, cent = _segment_costs(v, wn)
    # D[m][j]: best cost of v[0..j] in exactly m+1 clusters; start[m][j]: first index of the last
    D = cost[0].copy()
    starts = np.zeros((k, n), dtype=np.int64)
    for m in range(1, k):
        # last cluster v[i..j], i >= m; previous D[i-1]
        M = D[:-1, None] + cost[1:, :]  # row r -> i = r + 1
        M[: m - 1, :] = np.inf  # i >= m (each earlier cluster needs at least one value)
        r = np.argmin(M, axis=0)
        D = M[r, np.arange(n)]
        starts[m] = r + 1
    # backtrack from j = n-1 with k clusters
    bounds = []
    j = n - 1
    for m in range(k - 1, -1, -1):
        i = int(starts[m][j]) if m > 0 else 0
        bounds.append((i, j))
        j = i - 1
    bounds.reverse()
    centroids = np.array([cent[i, j] for i, j in bounds], dtype=np.int64)
    assign = np.empty(n, dtype=np.int64)
    for ci, (i, j) in enumerate(bounds):
        assign[i:j + 1] = ci
    total = float(np.sum(w * (v - centroids[assign]) ** 2))
    return centroids, assign, total


def lloyd_1d(values, weights, k: int, iters: int = 100):
    """Plain weighted Lloyd iterations from quantile initialisation with integer centroids.

    A simple baseline (used by the tests to check kmeans_1d is never worse)."""
    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if k >= v.size:
        return v.astype(np.int64), np.arange(v.size), 0.0
    cdf = np.cumsum(w) / w.sum()
    qs = (np.arange(k) + 0.5) / k
    c = np.rint(v[np.minimum(np.searchsorted(cdf, qs), v.size - 1)])
    for _ in range(iters):
        a = np.argmin(np.abs(v[:, None] - c[None, :]), axis=1)
        new = c.copy()
        for ci in range(k):
            sel = a == ci
            if sel.any():
                new[ci] = np.rint(np.sum(w[sel] * v[sel]) / np.sum(w[sel]))
        if np.array_equal(new, c):
            break
        c = new
    a = np.argmin(np.abs(v[:, None] - c[None, :]), axis=1)
    return c.astype(np.int64), a, float(np.sum(w * (v - c[a]) ** 2))


# ---------------------------------------------------------------------------------------------
# one tensor
# ---------------------------------------------------------------------------------------------
def _scale_per_element(t: Tensor) -> np.ndarray:
    """Real-unit scale of every weight (broadcast of the per-channel scales), float64."""
    q = t.quant
    shape = t.data.shape
    if q is None or q.scale.size == 0:
        return np.ones(shape, dtype=np.float64)
    s = np.asarray(q.scale, dtype=np.float64)
    if s.size == 1:
        return np.full(shape, s[0], dtype=np.float64)
    ax = q.axis
    bshape = [1] * len(shape)
    bshape[ax] = shape[ax]
    return np.broadcast_to(s.reshape(bshape), shape)


def _bits_for(k: int) -> int:
    return max(1, int(math.ceil(math.log2(k)))) if k > 1 else 1


def _pad(cb: np.ndarray, k: int) -> np.ndarray:
    out = np.empty(k, dtype=np.int64)
    out[: cb.size] = cb
    out[cb.size:] = cb[-1] if cb.size else 0
    return out


def _cluster_group(q: np.ndarray, elem_w: Optional[np.ndarray], k: int):
    """Cluster one group of int8 values (flat) into <= k integer centroids.

    elem_w: per-element weight of the squared error (None: 1). Returns (codebook int64 [k]
    padded, indices int64 like q)."""
    vals = q.astype(np.int64) + 128
    if elem_w is None:
        hist = np.bincount(vals, minlength=256).astype(np.float64)
    else:
        hist = np.bincount(vals, weights=elem_w, minlength=256)
    present = np.flatnonzero(np.bincount(vals, minlength=256))
    v = present - 128
    wts = hist[present]
    if np.any(wts <= 0):  # zero-scale channels: fall back to counts
        wts = np.bincount(vals, minlength=256)[present].astype(np.float64)
    cent, assign, _ = kmeans_1d(v, wts, k)
    lut = np.zeros(256, dtype=np.int64)
    lut[present] = assign
    return _pad(cent, k), lut[vals]


def _channel_error_weights(t: Tensor, channel_axis: int) -> np.ndarray:
    """Real-unit weight (scale^2) of each output channel's squared integer error."""
    s = _scale_per_element(t)
    sc = np.moveaxis(np.asarray(s), channel_axis, 0).reshape(t.data.shape[channel_axis], -1)
    w = sc[:, 0] ** 2
    if not np.all(w > 0):
        w = np.ones_like(w)
    return w


def _nearest_lut(cb: np.ndarray) -> np.ndarray:
    """For every int8 value (index v + 128), the index of its nearest centroid (ties: lower)."""
    v = np.arange(-128, 128)
    return np.argmin(np.abs(v[:, None] - cb[None, :].astype(np.int64)), axis=1)


def shared_codebooks(q: np.ndarray, channel_axis: int, ch_weight: np.ndarray, k: int, groups: int,
                     max_iter: int = 12):
    """G = ``groups`` codebooks of k entries shared by the output channels.

    A k-means over channels whose "centroids" are codebooks: channels start in ``groups``
    runs of similar integer RMS; then (1) each group's codebook is the exact k-means of its
    pooled histogram (each channel weighted by ``ch_weight``, i.e. scale^2), (2) each channel
    moves to the codebook with the least error for it; repeat until no channel moves. Both
    steps can only lower the total error. Deterministic (stable sorts, first-minimum ties).
    Returns (codebooks int64 [G, k], codebook_of_channel int64 [n_ch], indices like q).
    """
    qc = np.moveaxis(q, channel_axis, 0)
    n_ch = qc.shape[0]
    flat = qc.reshape(n_ch, -1).astype(np.int64) + 128
    H = np.zeros((n_ch, 256), dtype=np.float64)
    np.add.at(H, (np.repeat(np.arange(n_ch), flat.shape[1]), flat.reshape(-1)), 1.0)
    Hw = H * ch_weight[:, None]
    v = np.arange(-128, 128, dtype=np.float64)
    rms = np.sqrt((H * v * v).sum(1) / np.maximum(H.sum(1), 1))
    order = np.argsort(rms, kind="stable")
    G = max(1, min(groups, n_ch))
    assign = np.empty(n_ch, dtype=np.int64)
    for g, chunk in enumerate(np.array_split(order, G)):
        assign[chunk] = g

    memo = {}

    def codebook_of(members):
        key = members.tobytes()
        if key in memo:
            return memo[key]
        pooled = Hw[members].sum(0)
        cnt = H[members].sum(0)
        present = np.flatnonzero(cnt > 0)
        wts = pooled[present]
        if np.any(wts <= 0):
            wts = cnt[present]
        cent, _, _ = kmeans_1d(present - 128, wts, k)
        memo[key] = _pad(cent, k)
        return memo[key]

    cbs = np.zeros((G, k), dtype=np.int64)
    for _ in range(max_iter):
        for g in range(G):
            m = assign == g
            cbs[g] = codebook_of(m) if m.any() else cbs[g]
        D = (v[None, :, None] - cbs[:, None, :].astype(np.float64)) ** 2  # [G, 256, k]
        D = D.min(axis=2)
        E = Hw @ D.T  # [n_ch, G]
        used = np.bincount(assign, minlength=G) > 0
        E[:, ~used] = np.inf
        new = np.argmin(E, axis=1)
        # refill groups emptied by the move with the worst-served channels (deterministic)
        counts = np.bincount(new, minlength=G)
        cur = E[np.arange(n_ch), new]
        for g in np.flatnonzero(counts == 0):
            donors = [c for c in np.argsort(-cur, kind="stable") if np.bincount(new, minlength=G)[new[c]] > 1]
            if not donors:
                break
            c = donors[0]
            new[c] = g
            cur[c] = -np.inf
        if np.array_equal(new, assign):
            break
        assign = new
    else:
        for g in range(G):
            m = assign == g
            if m.any():
                cbs[g] = codebook_of(m)
    idx = np.empty(flat.shape, dtype=np.int64)
    luts = [_nearest_lut(cbs[g]) for g in range(G)]
    for c in range(n_ch):
        idx[c] = luts[assign[c]][flat[c]]
    # drop codebooks no channel uses and renumber (keeps G honest)
    used_g = np.unique(assign)
    remap = np.full(G, -1, dtype=np.int64)
    remap[used_g] = np.arange(used_g.size)
    return cbs[used_g], remap[assign], np.moveaxis(idx.reshape(qc.shape), 0, channel_axis)


def cluster_tensor(t: Tensor, k: int, granularity: str, channel_axis: Optional[int],
                   groups: Optional[int] = None) -> Clustering:
    """Cluster the int8 data of ``t`` to k entries per codebook.

    granularity: "per-tensor" | "per-channel" | "shared" (``groups`` codebooks shared by the
    channels along ``channel_axis``, see :func:`shared_codebooks`)."""
    if t.data is None or t.data.dtype != np.int8:
        raise TinyClusterError(f"tensor '{t.name}' is not a constant int8 tensor; cannot cluster it")
    if not 1 <= k <= 256:
        raise TinyClusterError(f"internal: k={k} out of range")
    q = t.data
    bits = _bits_for(k)
    unique_before = int(np.unique(q).size)
    if granularity == "per-tensor" or channel_axis is None:
        s = _scale_per_element(t)
        per_ch_quant = t.quant is not None and t.quant.scale.size > 1
        ew = (s * s).reshape(-1) if per_ch_quant else None
        cb, idx = _cluster_group(q.reshape(-1), ew, k)
        cl = Clustering(indices=idx.reshape(q.shape), codebooks=cb.reshape(1, k).astype(np.int8), bits=bits,
                        channel_axis=None, codebook_of_channel=None, granularity="per-tensor")
    elif granularity == "per-channel":
        qc = np.moveaxis(q, channel_axis, 0)
        n_ch = qc.shape[0]
        idx = np.empty(qc.shape, dtype=np.int64)
        cbs = np.empty((n_ch, k), dtype=np.int64)
        for c in range(n_ch):
            cb, ix = _cluster_group(qc[c].reshape(-1), None, k)
            cbs[c] = cb
            idx[c] = ix.reshape(qc.shape[1:])
        cl = Clustering(indices=np.moveaxis(idx, 0, channel_axis), codebooks=cbs.astype(np.int8), bits=bits,
                        channel_axis=channel_axis, codebook_of_channel=np.arange(n_ch), granularity="per-channel")
    elif granularity == "shared":
        if not groups or groups < 1:
            raise TinyClusterError(f"internal: shared codebooks need groups >= 1 (got {groups})")
        cbs, cmap, idx = shared_codebooks(q, channel_axis, _channel_error_weights(t, channel_axis), k, groups)
        cl = Clustering(indices=idx, codebooks=cbs.astype(np.int8), bits=bits, channel_axis=channel_axis,
                        codebook_of_channel=cmap, granularity="shared")
    else:
        raise TinyClusterError(f"granularity must be one of per-channel, per-tensor (got '{granularity}')")
    cl.unique_before = unique_before
    cl.unique_after = int(np.unique(cl.values()).size)
    return cl


def _distinct_per_channel(q: np.ndarray, axis: int) -> np.ndarray:
    qc = np.moveaxis(q, axis, 0).reshape(q.shape[axis], -1).astype(np.int64) + 128
    n = qc.shape[0]
    present = np.zeros((n, 256), dtype=bool)
    present[np.repeat(np.arange(n), qc.shape[1]), qc.reshape(-1)] = True
    return present.sum(axis=1)


def clustering_stats(t: Tensor, cl: Clustering, channel_axis: Optional[int]) -> dict:
    """Error and footprint figures of one clustering (see module docstring for the units)."""
    q = t.data.astype(np.int64)
    qa = cl.values().astype(np.int64)
    s = _scale_per_element(t)
    zp = 0
    if t.quant is not None and t.quant.zero_point.size:
        zps = np.asarray(t.quant.zero_point, dtype=np.int64)
        if zps.size == 1:
            zp = int(zps[0])
        else:
            bshape = [1] * q.ndim
            bshape[t.quant.axis] = q.shape[t.quant.axis]
            zp = zps.reshape(bshape)
    real = s * (q - zp)
    err = s * (qa - q)
    n = q.size
    sse = float(np.sum(err * err))
    ssw = float(np.sum(real * real))
    rms = math.sqrt(sse / n) if n else 0.0
    rms_w = math.sqrt(ssw / n) if n else 0.0
    rms_int8 = math.sqrt(float(np.mean(s * s)) / 12.0) if n else 0.0
    n_codebooks = int(cl.codebooks.shape[0])
    cb_bytes = n_codebooks * cl.k
    idx_bytes = packed_size(n, cl.bits)
    # shared codebooks need a uint8 codebook number per channel (const, flash)
    map_bytes = int(np.asarray(cl.codebook_of_channel).size) if cl.granularity == "shared" else 0
    changed = int(np.count_nonzero(qa != q))
    if channel_axis is not None and q.ndim:
        upc_before = int(_distinct_per_channel(t.data, channel_axis).max())
        upc_after = int(_distinct_per_channel(cl.values(), channel_axis).max())
    else:
        upc_before = upc_after = None
    return {
        "granularity": cl.granularity,
        "k": cl.k,
        "bits": cl.bits,
        "codebooks": n_codebooks,
        "codebook_bytes": cb_bytes,
        "index_bytes": idx_bytes,
        "map_bytes": map_bytes,
        "footprint_bytes": idx_bytes + cb_bytes + map_bytes,
        "unique_before": int(cl.unique_before),
        "unique_after": int(cl.unique_after),
        "max_unique_per_channel_before": upc_before,
        "max_unique_per_channel_after": upc_after,
        "changed_weights": changed,
        "exact": changed == 0,
        "max_abs_error_q": int(np.max(np.abs(qa - q))) if n else 0,
        "rms_error": rms,
        "rel_rms_error": (rms / rms_w) if rms_w > 0 else 0.0,
        "snr_db": (10.0 * math.log10(ssw / sse)) if sse > 0 and ssw > 0 else None,
        "rms_int8_rounding": rms_int8,
    }


# ---------------------------------------------------------------------------------------------
# the pass
# ---------------------------------------------------------------------------------------------
@dataclass
class ClusterOptions:
    bits: Optional[int] = None
    clusters: Optional[int] = None
    lossless: bool = False
    granularity: str = "auto"
    tolerance: float = DEFAULT_TOLERANCE

    def validate(self) -> "ClusterOptions":
        chosen = sum(x is not None and x is not False for x in (self.bits, self.clusters, self.lossless or None))
        if chosen == 0:
            raise TinyClusterError("give one of --bits B (1..8), --clusters K (2..256) or --lossless")
        if chosen > 1:
            raise TinyClusterError("give only one of --bits, --clusters and --lossless")
        if self.bits is not None:
            if isinstance(self.bits, bool) or not isinstance(self.bits, (int, np.integer)) or not 1 <= self.bits <= 8:
                raise TinyClusterError(f"--bits must be an integer from 1 to 8 (got {self.bits}); "
                                       "k = 2^bits clusters, 8 bits is lossless on int8 models")
        if self.clusters is not None:
            if isinstance(self.clusters, bool) or not isinstance(self.clusters, (int, np.integer)) \
                    or not 2 <= self.clusters <= 256:
                raise TinyClusterError(f"--clusters must be an integer from 2 to 256 (got {self.clusters}); "
                                       "int8 weights have at most 256 distinct values")
        if self.granularity not in GRANULARITIES:
            raise TinyClusterError(f"--granularity must be one of {', '.join(GRANULARITIES)} "
                                   f"(got '{self.granularity}')")
        if not (self.tolerance >= 0):
            raise TinyClusterError(f"tolerance must be >= 0 (got {self.tolerance})")
        return self

    @property
    def k(self) -> Optional[int]:
        if self.bits is not None:
            return 1 << int(self.bits)
        if self.clusters is not None:
            return int(self.clusters)
        return None

    def as_dict(self) -> dict:
        return {"bits": self.bits, "clusters": self.clusters, "lossless": bool(self.lossless),
                "granularity": self.granularity, "tolerance": self.tolerance, "k": self.k}


SHARED_GROUPS = (2, 4, 8, 16, 32)


def _acceptable(st: dict, pc: dict, tolerance: float) -> bool:
    return st["rms_error"] <= max((1.0 + tolerance) * pc["rms_error"], pc["rms_int8_rounding"])


def _why(name: str, st: dict, pc: dict, tolerance: float) -> str:
    if st["rms_error"] == 0:
        return f"{name}: exact"
    if pc["rms_error"] > 0 and st["rms_error"] <= (1.0 + tolerance) * pc["rms_error"]:
        return f"{name}: RMS error {st['rms_error'] / pc['rms_error']:.2f}x per-channel (<= {1 + tolerance:.2f}x allowed)"
    return (f"{name}: RMS error {st['rms_error']:.3g} within the int8 rounding noise "
            f"{pc['rms_int8_rounding']:.3g}")


def _auto(t: Tensor, k: int, axis: int, tolerance: float):
    """Granularity ``auto``: the smallest-footprint acceptable candidate among per-tensor,
    shared codebooks (G in SHARED_GROUPS) and per-channel. Returns (cands, choice, reason)."""
    cands = {}

    def add(name, g, groups=None):
        cl = cluster_tensor(t, k, g, axis, groups=groups)
        cands[name] = (cl, clustering_stats(t, cl, axis))
        return cands[name][1]

    pc = add("per-channel", "per-channel")
    pt = add("per-tensor", "per-tensor")
    n_ch = t.data.shape[axis]
    if _acceptable(pt, pc, tolerance) and pt["footprint_bytes"] <= pc["footprint_bytes"]:
        return cands, "per-tensor", _why("per-tensor", pt, pc, tolerance) + \
            f"; saves {pc['footprint_bytes'] - pt['footprint_bytes']} bytes vs per-channel"
    # shared codebooks: only group counts whose footprint beats per-channel; error falls (roughly)
    # as G grows, so try the largest first and search down only if it is acceptable
    gs = [g for g in SHARED_GROUPS if g <= n_ch // 2 and g * k + n_ch < n_ch * k]
    best = None
    if gs:
        st = add(f"shared-{gs[-1]}", "shared", gs[-1])
        if _acceptable(st, pc, tolerance):
            best = gs[-1]
            lo, hi = 0, len(gs) - 1  # gs[hi] acceptable; find the smallest acceptable by bisection
            while lo < hi:
                mid = (lo + hi) // 2
                st = add(f"shared-{gs[mid]}", "shared", gs[mid])
                if _acceptable(st, pc, tolerance):
                    hi = mid
                    best = gs[mid]
                else:
                    lo = mid + 1
    if best is not None:
        name = f"shared-{best}"
        st = cands[name][1]
        return cands, name, (_why(f"{st['codebooks']} shared codebooks", st, pc, tolerance) +
                             f"; saves {pc['footprint_bytes'] - st['footprint_bytes']} bytes vs per-channel")
    ratio = pt["rms_error"] / pc["rms_error"] if pc["rms_error"] > 0 else math.inf
    rtxt = "inf" if math.isinf(ratio) else f"{ratio:.2f}"
    tried = f", {gs[-1]} shared codebooks {cands[f'shared-{gs[-1]}'][1]['rms_error'] / pc['rms_error']:.2f}x" \
        if gs and pc["rms_error"] > 0 else ""
    return cands, "per-channel", (f"per-channel: RMS error of per-tensor {rtxt}x{tried} (> {1 + tolerance:.2f}x "
                                  f"allowed, above the int8 rounding noise)")


def _lossless_k(t: Tensor, channel_axis: Optional[int]):
    k_pt = max(2, int(np.unique(t.data).size))
    k_pc = max(2, int(_distinct_per_channel(t.data, channel_axis).max())) if channel_axis is not None else None
    return k_pt, k_pc


def lossless_shared(q: np.ndarray, channel_axis: int, bits: int):
    """Exact shared codebooks of at most 2^bits entries: channels are packed first-fit, largest
    value set first, into groups whose union of distinct values fits in 2^bits; each group's
    codebook is its sorted union. Deterministic. Returns (codebooks int64 [G, k], codebook_of_channel,
    indices like q) with k = the largest union (>= 2), or None when a channel alone does not fit.
    """
    cap = 1 << bits
    qc = np.moveaxis(q, channel_axis, 0)
    n_ch = qc.shape[0]
    flat = qc.reshape(n_ch, -1).astype(np.int64) + 128
    P = np.zeros((n_ch, 256), dtype=bool)
    P[np.repeat(np.arange(n_ch), flat.shape[1]), flat.reshape(-1)] = True
    if P.sum(1).max() > cap:
        return None
    unions = []
    assign = np.empty(n_ch, dtype=np.int64)
    for c in np.argsort(-P.sum(1), kind="stable"):
        for gi, u in enumerate(unions):
            if np.count_nonzero(u | P[c]) <= cap:
                unions[gi] = u | P[c]
                assign[c] = gi
                break
        else:
            unions.append(P[c].copy())
            assign[c] = len(unions) - 1
    k = max(2, max(int(u.sum()) for u in unions))
    cbs = np.zeros((len(unions), k), dtype=np.int64)
    luts = np.zeros((len(unions), 256), dtype=np.int64)
    for gi, u in enumerate(unions):
        vals = np.flatnonzero(u)
        cbs[gi] = _pad(vals - 128, k)
        luts[gi, vals] = np.arange(vals.size)
    idx = luts[assign[:, None], flat]
    return cbs, assign, np.moveaxis(idx.reshape(qc.shape), 0, channel_axis)


def _lossless(t: Tensor, axis: Optional[int], granularity: str):
    """Lossless candidates and choice (module docstring). Returns (cands, choice, reason)."""
    k_pt, k_pc = _lossless_k(t, axis)
    cands = {}

    def add(name, cl):
        cands[name] = (cl, clustering_stats(t, cl, axis))

    if axis is None or granularity == "per-tensor":
        add("per-tensor", cluster_tensor(t, k_pt, "per-tensor", axis))
        return cands, "per-tensor", "per-tensor (" + ("requested" if axis is not None else "no channel axis") + \
            f"), smallest exact k = {k_pt}"
    add("per-channel", cluster_tensor(t, k_pc, "per-channel", axis))
    if granularity == "per-channel":
        return cands, "per-channel", f"per-channel (requested), smallest exact k = {k_pc}"
    add("per-tensor", cluster_tensor(t, k_pt, "per-tensor", axis))
    n_ch = t.data.shape[axis]
    for b in range(_bits_for(k_pc), _bits_for(k_pt)):
        res = lossless_shared(t.data, axis, b)
        if res is None or not 2 <= res[0].shape[0] < n_ch or res[0].shape[0] > 256:
            continue  # the kernels' codebook map is uint8: at most 256 shared codebooks
        cbs, cmap, idx = res
        cl = Clustering(indices=idx, codebooks=cbs.astype(np.int8), bits=_bits_for(cbs.shape[1]),
                        channel_axis=axis, codebook_of_channel=cmap, granularity="shared")
        cl.unique_before = int(np.unique(t.data).size)
        cl.unique_after = int(np.unique(cl.values()).size)
        add(f"shared-{b}bit", cl)
    # smallest footprint; ties go to fewer codebooks (per-tensor, then shared, then per-channel)
    order = ["per-tensor"] + [n for n in cands if n.startswith("shared")] + ["per-channel"]
    choice = min(order, key=lambda n: (cands[n][1]["footprint_bytes"], order.index(n)))
    st = cands[choice][1]
    others = ", ".join(f"{n} {cands[n][1]['footprint_bytes']}" for n in order if n != choice)
    label = f"{st['codebooks']} shared codebooks" if choice.startswith("shared") else choice
    return cands, choice, (f"{label}: smallest exact footprint, {st['footprint_bytes']} bytes at "
                           f"{st['bits']} bits (vs {others})")


def cluster_graph(graph: Graph, bits: Optional[int] = None, clusters: Optional[int] = None,
                  lossless: bool = False, granularity: str = "auto",
                  tolerance: float = DEFAULT_TOLERANCE, seed: Optional[int] = None) -> list:
    """Cluster every weight tensor of ``graph`` (``graph.weight_tensors()``) in place.

    Exactly one of ``bits`` (k = 2^bits, 1..8), ``clusters`` (k in 2..256, index width
    ceil(log2 k)) or ``lossless`` must be given. ``granularity``: per-channel | per-tensor |
    auto (see module docstring; ``tolerance`` is auto's allowed relative RMS increase).
    ``seed`` is accepted for API symmetry with the stochastic front-end passes and recorded,
    but unused: the solver is exact and deterministic, the same input gives the same result.

    Sets ``tensor.clustering`` and returns one dict per clustered tensor (also stored in
    ``graph.meta["clustering"] = {"options": ..., "layers": [...]}``) with keys:
    layer, op, node_index, tensor, tensor_id, shape, weights, channels, channel_axis,
    granularity, granularity_reason, k, bits, codebooks, codebook_bytes, index_bytes,
    footprint_bytes, unique_before, unique_after, max_unique_per_channel_before/after,
    changed_weights, exact, max_abs_error_q, rms_error, rel_rms_error, snr_db (None when
    exact), rms_int8_rounding, candidates (auto/lossless: the stats of both granularities).
    """
    from ..ops import get_handler

    opts = ClusterOptions(bits=bits, clusters=clusters, lossless=bool(lossless), granularity=granularity,
                          tolerance=tolerance).validate()
    opts_dict = dict(opts.as_dict(), seed=seed)
    records = []
    seen = set()
    for node, t in graph.weight_tensors():
        if t.id in seen:
            continue  # a weight shared by two ops is clustered once
        seen.add(t.id)
        if t.data is None or t.data.dtype != np.int8:
            continue
        h = get_handler(node.op)
        axis = h.weight_channel_axis
        if axis is not None and not -t.data.ndim <= axis < t.data.ndim:
            axis = None
        if axis is not None:
            axis %= t.data.ndim
        cands = {}
        if opts.lossless:
            cands, choice, reason = _lossless(t, axis, opts.granularity)
        else:
            k = opts.k
            if axis is None:
                choice, reason = "per-tensor", "per-tensor (no channel axis)"
                cl = cluster_tensor(t, k, "per-tensor", None)
                cands[choice] = (cl, clustering_stats(t, cl, None))
            elif opts.granularity == "auto":
                cands, choice, reason = _auto(t, k, axis, opts.tolerance)
            else:
                choice, reason = opts.granularity, f"{opts.granularity} (requested)"
                cl = cluster_tensor(t, k, choice, axis)
                cands[choice] = (cl, clustering_stats(t, cl, axis))
        cl, st = cands[choice]
        t.clustering = cl
        rec = {
            "layer": node.name,
            "op": node.op,
            "node_index": node.index,
            "tensor": t.name,
            "tensor_id": t.id,
            "shape": list(t.shape),
            "weights": int(t.size),
            "channels": int(t.data.shape[axis]) if axis is not None else 1,
            "channel_axis": axis,
            "granularity_reason": reason,
        }
        rec.update(st)
        if len(cands) > 1:
            rec["candidates"] = {g: {kk: s[kk] for kk in ("k", "bits", "codebooks", "codebook_bytes", "index_bytes",
                                                          "map_bytes", "footprint_bytes", "rms_error", "snr_db",
                                                          "exact")}
                                 for g, (_, s) in cands.items()}
        records.append(rec)
    graph.meta["clustering"] = {"options": opts_dict, "layers": records}
    return records
