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

``auto`` (the default; :func:`choose_auto`): the candidates of a layer are the normalized
layout (one codebook per tensor in each channel's normalized domain, refit per-channel scales,
``calibrated.fit_normalized``), per-tensor, per-channel, shared with G in ``SHARED_GROUPS``
(G <= n_channels/2, only when cheaper than per-channel) and RAW8 (the int8 weights, exact), all
at the requested index width, and, with calibration data (mixed widths), the normalized layout
one bit narrower and one bit wider (1..7 bits), all priced by :func:`cost.weight_cost`. Every layer starts at its
cheapest candidate (never above RAW8); then, while the flash allowance lasts
(:func:`auto_allowance`: up to the codebook-economy bound ``AUTO_ECONOMY`` x (b-bit indices +
4 B per bias + 5 B per output channel)), the upgrade of any layer to any of its candidates that
removes the most error per extra byte is applied; with codebooks in SRAM their bytes are capped
at ``AUTO_SRAM_FRACTION`` of the activation arena. The error is each layer's relative output
error ``e^T H e / w^T S w`` on the calibration data (``--calib``; H the input covariance, the
mean error going into the bias) times the layer's output gain (how much of its error reaches the
model's output on the calibration inputs, :func:`_output_gains`), or, without data, the relative weight error under the
data-free prior of :func:`_prior_alpha`. The reason is recorded per layer, and the figures of
every candidate tried are kept under ``candidates``.

With calibration data the chosen fits (normalized and per-channel) are then fitted again in
graph order, same layout and width (:func:`_sequential_refit`): each to the original layer's
output as a function of the *clustered* graph's inputs (upstream error compensated, as GPTQ's
sequential mode), kept only where that lowers the error of the values in place; the bias
correction follows in the same pass.

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

GRANULARITIES = ("per-channel", "per-tensor", "normalized", "auto")


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


def clustering_stats(t: Tensor, cl: Optional[Clustering], channel_axis: Optional[int], scale=None,
                     source_scale=None) -> dict:
    """Error and footprint figures of one clustering (see module docstring for the units).

    ``cl`` None: the int8 weights stored raw. ``scale``: the weight scales the clustered values
    are read with (None: the tensor's own); ``source_scale``: those of the original values
    (None: the tensor's own). Footprint figures are left to :func:`cost.weight_cost`."""
    q = t.data.astype(np.int64)
    qa = q if cl is None else cl.values().astype(np.int64)
    s = _scale_per_element(t)
    if source_scale is not None:
        s = _broadcast_scale(np.asarray(source_scale, np.float64), q.shape, channel_axis)
    s_new = s if scale is None else _broadcast_scale(np.asarray(scale, np.float64), q.shape, channel_axis)
    zp = 0
    if t.quant is not None and t.quant.zero_point.size:
        zps = np.asarray(t.quant.zero_point, dtype=np.int64)
        if zps.size == 1 or np.all(zps == zps[0]):
            zp = int(zps[0])
        else:
            bshape = [1] * q.ndim
            bshape[t.quant.axis] = q.shape[t.quant.axis]
            zp = zps.reshape(bshape)
    real = s * (q - zp)
    err = s_new * (qa - zp) - real
    n = q.size
    sse = float(np.sum(err * err))
    ssw = float(np.sum(real * real))
    rms = math.sqrt(sse / n) if n else 0.0
    rms_w = math.sqrt(ssw / n) if n else 0.0
    rms_int8 = math.sqrt(float(np.mean(s * s)) / 12.0) if n else 0.0
    changed = int(np.count_nonzero(qa != q)) if scale is None else int(np.count_nonzero(err))
    if channel_axis is not None and q.ndim:
        upc_before = int(_distinct_per_channel(t.data, channel_axis).max())
        upc_after = int(_distinct_per_channel(qa.astype(np.int8), channel_axis).max())
    else:
        upc_before = upc_after = None
    return {
        "granularity": "raw int8" if cl is None else cl.granularity,
        "k": None if cl is None else cl.k,
        "bits": 8 if cl is None else cl.bits,
        "codebooks": 0 if cl is None else int(cl.codebooks.shape[0]),
        "unique_before": int(np.unique(q).size),
        "unique_after": int(np.unique(qa).size),
        "max_unique_per_channel_before": upc_before,
        "max_unique_per_channel_after": upc_after,
        "changed_weights": changed,
        "exact": sse == 0.0,
        "max_abs_error_q": int(np.max(np.abs(qa - q))) if n and scale is None else None,
        "rms_error": rms,
        "rel_rms_error": (rms / rms_w) if rms_w > 0 else 0.0,
        "snr_db": (10.0 * math.log10(ssw / sse)) if sse > 0 and ssw > 0 else None,
        "rms_int8_rounding": rms_int8,
    }


def _broadcast_scale(s: np.ndarray, shape, axis) -> np.ndarray:
    if s.size == 1:
        return np.full(shape, float(s[0]))
    bshape = [1] * len(shape)
    bshape[axis] = shape[axis]
    return np.broadcast_to(s.reshape(bshape), shape)


# ---------------------------------------------------------------------------------------------
# the pass
# ---------------------------------------------------------------------------------------------
#: auto's flash target: the codebook-economy bound at the requested width, ``AUTO_ECONOMY`` x
#: (b-bit indices + 4 B per int32 bias + 5 B per output channel), summed over the weighted layers
AUTO_ECONOMY = 1.10
#: flash per graph node the bound does not count (the op's params struct, at most 32 B today)
NODE_FLASH_OVERHEAD = 32
#: auto with codebooks in SRAM: codebook bytes at most this fraction of the activation arena
#: (the cheapest layouts' codebooks are always allowed)
AUTO_SRAM_FRACTION = 0.25
SHARED_GROUPS = (4, 16)
#: calibration inputs the output gains of auto (:func:`_output_gains`) run the model on
GAIN_SAMPLES = 32


@dataclass
class ClusterOptions:
    bits: Optional[int] = None
    clusters: Optional[int] = None
    lossless: bool = False
    granularity: str = "auto"

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
                "granularity": self.granularity, "k": self.k}


@dataclass
class Candidate:
    """One way to store a layer's weights: ``cl`` None is RAW8 (the int8 values as they are);
    ``scale`` the new per-channel weight scales (None: unchanged); ``error`` the relative
    output error (calibration data) or relative weight error (data-free)."""
    name: str
    cl: Optional[Clustering]
    scale: Optional[np.ndarray]
    cost: object
    error: float


def _prior_alpha(graph, node) -> float:
    """Data-free prior of a layer's inputs from their int8 quantization: inputs spread over the
    real range [lo, hi] with mean (lo + hi) / 2; alpha = (mean / half-range)^2 is the weight of
    the common-mean term of ``H = I + alpha 11^T`` (1 for a one-sided range, as after ReLU; 0 for
    a symmetric one)."""
    q = graph.tensors[node.inputs[0]].quant
    if q is None or q.scale.size != 1:
        return 0.0
    zp = float(q.zero_point[0])
    lo, hi = -128.0 - zp, 127.0 - zp
    return float(((lo + hi) / (hi - lo)) ** 2)


class _Layer:
    """One weighted layer and what the fits need: real weights [C, d], int8 rows, scales, the
    error metric (H from calibration data or None), its signal."""

    def __init__(self, graph, node, t, axis, stats):
        from .calibrated import real_rows, row_scales, weight_matrix

        self.graph, self.node, self.t, self.axis = graph, node, t, axis
        self.Q = weight_matrix(node, t.data).astype(np.int64)
        self.C = self.Q.shape[0]
        self.W = real_rows(node, t)
        self.s = row_scales(t, self.C)
        self.per_tensor = t.quant.scale.size == 1  # the source quantization (one weight scale)
        self.stats = stats
        has_bias = len(node.inputs) > 2 and node.inputs[2] >= 0
        if stats is None:  # data-free prior (see _prior_alpha)
            d = self.W.shape[1]
            a = _prior_alpha(graph, node)
            self.H = self.S = (np.eye(d) + a * np.ones((d, d))) if a > 0 else None
        else:
            self.S = stats.second_moment()
            self.H = stats.H if has_bias else self.S  # bias correction removes the mean error
        from .calibrated import quad_cost

        self.signal = float(np.sum(quad_cost(self.W, self.S)))

    def error_of(self, cl: Optional[Clustering], scale=None) -> float:
        from .calibrated import quad_cost, weight_matrix

        if cl is None:
            return 0.0
        V = weight_matrix(self.node, cl.values()).astype(np.float64)
        s = self.s if scale is None else np.asarray(scale, np.float32).astype(np.float64)
        E = self.W - V * s[:, None]
        e = float(np.sum(quad_cost(E, self.H)))
        return e / self.signal if self.signal > 0 else (0.0 if e == 0 else math.inf)

    def candidate(self, name, cl, scale=None) -> Candidate:
        from .cost import weight_cost

        return Candidate(name, cl, scale, weight_cost(self.node, self.graph, cl, scale), self.error_of(cl, scale))

    def from_fit(self, fit, k: int, granularity: str) -> Clustering:
        from .calibrated import matrix_to_weight

        cbs = fit.codebooks
        if cbs.shape[1] < k:
            cbs = np.concatenate([cbs, np.repeat(cbs[:, -1:], k - cbs.shape[1], axis=1)], axis=1)
        idx = matrix_to_weight(self.node, fit.idx, self.t.data.shape)
        if granularity == "normalized":
            cl = Clustering(indices=idx, codebooks=cbs.astype(np.int8), bits=_bits_for(k), channel_axis=None,
                            codebook_of_channel=None, granularity="normalized")
        else:
            cl = Clustering(indices=idx, codebooks=cbs.astype(np.int8), bits=_bits_for(k), channel_axis=self.axis,
                            codebook_of_channel=np.asarray(fit.cmap), granularity=granularity)
        cl.unique_before = int(np.unique(self.t.data).size)
        cl.unique_after = int(np.unique(cl.values()).size)
        return cl

    def rescaled(self, scale) -> Optional[np.ndarray]:
        """``scale`` as float32, or None when it equals the current scales (no rewrite)."""
        s32 = np.asarray(scale, dtype=np.float32)
        return None if np.array_equal(s32, self.s.astype(np.float32)) else s32


def _fit_candidate(L: _Layer, k: int, layout: str) -> Candidate:
    from .calibrated import fit_normalized, fit_per_channel_oa

    if layout == "normalized":
        fit = fit_normalized(L.W, L.H, k)
        return L.candidate("normalized", L.from_fit(fit, k, "normalized"), L.rescaled(fit.scale))
    if layout == "per-channel" and L.stats is not None:
        fit = fit_per_channel_oa(L.W, L.H, k, L.s, L.Q, new_grid=L.per_tensor)
        return L.candidate("per-channel", L.from_fit(fit, k, "per-channel"), L.rescaled(fit.scale))
    if layout in ("per-channel", "per-tensor"):
        return L.candidate(layout, cluster_tensor(L.t, k, layout, L.axis))
    raise TinyClusterError(f"internal: unknown layout {layout}")


def _sequential_refit(L: _Layer, c: Candidate, k: int, Wt: np.ndarray, Hn: np.ndarray) -> Optional[Candidate]:
    """The chosen candidate ``c`` of a layer (a data fit: normalized or per-channel) fitted
    again, same layout and width, to the compensated target ``Wt`` (the original layer's output
    on the clustered stream's inputs, :func:`calibrated.compensated_target`) under ``Hn`` (those
    inputs' covariance). None when ``c`` is no such fit, or the new fit costs more flash or does
    not lower the error ``(V - Wt) Hn (V - Wt)^T`` of the values in place."""
    from .calibrated import QMAX, fit_normalized, fit_per_channel_oa, quad_cost, weight_matrix
    from .cost import weight_cost

    if c.cl is None or L.stats is None or c.cl.granularity not in ("normalized", "per-channel"):
        return None
    k = int(c.cl.codebooks.shape[1])  # the candidate's own width (mixed widths)
    if c.cl.granularity == "normalized":
        fit = fit_normalized(Wt, Hn, k)
    else:
        Qt = np.clip(np.rint(Wt / L.s[:, None]), -QMAX, QMAX).astype(np.int64)
        fit = fit_per_channel_oa(Wt, Hn, k, L.s, Qt, new_grid=L.per_tensor)
    cl = L.from_fit(fit, k, c.cl.granularity)
    scale = L.rescaled(fit.scale)
    cost = weight_cost(L.node, L.graph, cl, scale)
    if cost.flash > c.cost.flash:
        return None

    def err(cl_, scale_):
        V = weight_matrix(L.node, cl_.values()).astype(np.float64)
        s = L.s if scale_ is None else np.asarray(scale_, np.float32).astype(np.float64)
        return float(np.sum(quad_cost(Wt - V * s[:, None], Hn)))

    if err(cl, scale) >= err(c.cl, c.scale):
        return None
    return Candidate(c.name, cl, scale, cost, L.error_of(cl, scale))


def _candidates(L: _Layer, k: int, granularity: str) -> list:
    """Candidates of one layer for ``--bits``/``--clusters`` (module docstring)."""
    raw = L.candidate("raw int8", None)
    if k >= 256:  # every int8 value has its own entry: exact, on the tensor's own grid
        g = "per-tensor" if L.axis is None or granularity in ("auto", "normalized") else granularity
        return [L.candidate(g, cluster_tensor(L.t, k, g, L.axis)), raw]
    if L.axis is None:
        return [L.candidate("per-tensor", cluster_tensor(L.t, k, "per-tensor", None)), raw]
    if granularity != "auto":
        return [_fit_candidate(L, k, granularity), raw]
    cands = [_fit_candidate(L, k, g) for g in ("normalized", "per-tensor", "per-channel")]
    for g in SHARED_GROUPS:
        if g <= L.C // 2 and g * k + L.C < L.C * k:
            cl = cluster_tensor(L.t, k, "shared", L.axis, groups=g)
            cands.append(L.candidate(f"shared-{cl.codebooks.shape[0]}", cl))
    # Mixed widths: the normalized layout one bit narrower and wider, only with calibration data.
    # They are traded by output error; without data the weight-error prior does not predict it
    # (docs/fidelity.md), and a data-free --bits b keeps b bits, which the Cortex-M fast paths
    # (pair tables, flash tables) are sized for (docs/benchmarks.md, ad01).
    for kk in ((k // 2, 2 * k) if L.stats is not None else ()):
        if 2 <= kk <= 128:
            c = _fit_candidate(L, kk, "normalized")
            c.name = f"normalized {_bits_for(kk)}-bit"
            cands.append(c)
    return cands + [raw]


def _lossless_candidates(L: _Layer, granularity: str) -> list:
    """Exact candidates (module docstring) and RAW8."""
    t, axis = L.t, L.axis
    k_pt, k_pc = _lossless_k(t, axis)
    cands = []
    if axis is None or granularity in ("per-tensor", "normalized"):
        cands.append(L.candidate("per-tensor", cluster_tensor(t, k_pt, "per-tensor", axis)))
    elif granularity == "per-channel":
        cands.append(L.candidate("per-channel", cluster_tensor(t, k_pc, "per-channel", axis)))
    else:
        cands.append(L.candidate("per-tensor", cluster_tensor(t, k_pt, "per-tensor", axis)))
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
            cands.append(L.candidate(f"shared-{b}bit", cl))
        cands.append(L.candidate("per-channel", cluster_tensor(t, k_pc, "per-channel", axis)))
    return cands + [L.candidate("raw int8", None)]


def _smallest(cands: list) -> Candidate:
    """Least flash; ties: less error, then the earlier (fewer codebooks) candidate."""
    return min(cands, key=lambda c: (c.cost.flash, c.error, cands.index(c)))


def _fmt_err(e: float) -> str:
    return "exact" if e == 0 else f"relative error {e:.2e}"


def auto_allowance(graph, Ls: list, cand_lists: list, k: int) -> int:
    """Bytes ``auto`` may spend beyond the cheapest candidate of every layer: what brings the
    model's flash up to the codebook-economy bound at this width (``AUTO_ECONOMY`` x (b-bit
    indices + 4 B per bias + 5 B per output channel)), after the int8 model's own bias and
    requantization constants (:mod:`cost`) and ``NODE_FLASH_OVERHEAD`` per node. 0 when the
    cheapest layouts already reach it."""
    from .cost import REQUANT_ENTRY_BYTES, requant_entries, source_scales

    bits = _bits_for(k)
    bound = fixed = 0
    for L in Ls:
        node = L.node
        n_bias = int(graph.tensors[node.inputs[2]].size) if len(node.inputs) > 2 and node.inputs[2] >= 0 else 0
        bound += packed_size(int(L.t.size), bits) + 4 * n_bias + REQUANT_ENTRY_BYTES * L.C
        fixed += 4 * n_bias + REQUANT_ENTRY_BYTES * requant_entries(node, graph, source_scales(graph, L.t))
    cheapest = sum(_smallest(c).cost.flash for c in cand_lists)
    target = AUTO_ECONOMY * bound - fixed - NODE_FLASH_OVERHEAD * len(graph.nodes)
    return max(0, int(target - cheapest))


def _output_gains(graph, Ls: list, cand_lists: list, calib) -> list:
    """Per layer, how much of its own relative output error reaches the model's output on the
    calibration inputs: the layer alone takes its least accurate candidate (mean error moved into
    the bias, as the bias correction does), the model runs on the calibration inputs (at most
    ``GAIN_SAMPLES``, an even subsample), and the gain is the output's relative squared error over
    the layer's relative output error. A layer without a probe gets the median gain; a gain is
    at least 1e-3 of the median (a probe that moved no output)."""
    from ..executor import run_graph
    from ..ir import QuantParams
    from ..ops import get_handler
    from .calibrated import corrected_bias, weight_matrix

    if len(calib) > GAIN_SAMPLES:  # an even subsample
        calib = [calib[i] for i in np.linspace(0, len(calib) - 1, GAIN_SAMPLES).astype(np.int64)]
    out_t = graph.tensors[graph.outputs[0]]
    zp = float(out_t.quant.zero_point[0]) if out_t.quant is not None and out_t.quant.zero_point.size else 0.0
    y0 = np.stack([np.asarray(run_graph(graph, x), np.float64) for x in calib]) - zp
    sig = float(np.sum(y0 * y0)) or 1.0
    gains = []
    for L, cands in zip(Ls, cand_lists):
        probes = [c for c in cands if c.cl is not None and c.error > 0]
        node = L.node
        has_bias = len(node.inputs) > 2 and node.inputs[2] >= 0
        if not probes or L.stats is None or not has_bias:
            gains.append(None)
            continue
        c = max(probes, key=lambda c: c.error)
        bt = graph.tensors[node.inputs[2]]
        saved = (L.t.clustering, L.t.quant, bt.data)
        s_n = L.s if c.scale is None else c.scale
        qn = weight_matrix(node, c.cl.values()).astype(np.float64)
        b_o = np.asarray(bt.data, np.float64).reshape(-1)
        L.t.clustering = c.cl
        if c.scale is not None:
            L.t.quant = QuantParams(scale=np.asarray(c.scale, np.float32), zero_point=np.zeros(L.C, np.int64),
                                    axis=L.axis)
        bt.data = corrected_bias(L.Q, qn, b_o, L.stats.mu, L.stats.mu, L.s, s_n).reshape(bt.data.shape)
        get_handler(node.op).resolve(node, graph)
        y = np.stack([np.asarray(run_graph(graph, x), np.float64) for x in calib]) - zp
        L.t.clustering, L.t.quant, bt.data = saved
        get_handler(node.op).resolve(node, graph)
        gains.append(float(np.sum((y - y0) ** 2)) / sig / c.error)
    known = [g for g in gains if g is not None and g > 0]
    fill = float(np.median(known)) if known else 1.0
    return [fill if g is None else max(g, 1e-3 * fill) for g in gains]


def choose_auto(layers: list, cand_lists: list, extra_bytes: int, sram_cap: Optional[int], gains=None):
    """``auto``'s rule. Start every layer at its cheapest candidate (never above RAW8, which is
    a candidate); then, while bytes remain, apply the upgrade (any layer to any of its
    candidates with less error) that removes the most error per extra flash byte and fits
    both the flash allowance ``extra_bytes`` and, when given, the SRAM cap on codebook bytes.
    Errors are each layer's relative output error on the calibration data (relative weight
    error without data), summed over the layers, each weighted by ``gains[i]`` when given (with
    calibration data: how much of that layer's error reaches the model's output,
    :func:`_output_gains`). Returns (chosen candidates, reasons, spent)."""
    cur = [_smallest(c) for c in cand_lists]
    why = [f"{c.name}: cheapest ({c.cost.flash} B, {_fmt_err(c.error)})" for c in cur]
    spent = 0
    sram = sum(c.cost.codebooks for c in cur)
    cap = None if sram_cap is None else max(sram_cap, sram)
    while True:
        best = None
        for i, cands in enumerate(cand_lists):
            for c in cands:
                d_err = (cur[i].error - c.error) * (1.0 if gains is None else gains[i])
                if d_err <= 0:
                    continue
                d_cost = c.cost.flash - cur[i].cost.flash
                if spent + max(d_cost, 0) > extra_bytes:
                    continue
                if cap is not None and sram - cur[i].cost.codebooks + c.cost.codebooks > cap:
                    continue
                score = math.inf if d_cost <= 0 else d_err / d_cost
                if best is None or score > best[0]:
                    best = (score, i, c, d_cost, d_err)
        if best is None:
            break
        _, i, c, d_cost, d_err = best
        why[i] = (f"{c.name}: {_fmt_err(c.error)} for {d_cost:+d} B over {cur[i].name} "
                  f"({_fmt_err(cur[i].error)}), the best error removed per byte")
        sram += c.cost.codebooks - cur[i].cost.codebooks
        spent += max(d_cost, 0)
        cur[i] = c
    return cur, why, spent


def cluster_graph(graph: Graph, bits: Optional[int] = None, clusters: Optional[int] = None,
                  lossless: bool = False, granularity: str = "auto", seed: Optional[int] = None,
                  calib=None, codebooks_in_sram: bool = True, calib_source: str = "",
                  flash_tables: float = 0.0) -> list:
    """Cluster every weight tensor of ``graph`` (resolved; ``graph.weight_tensors()``) in place.

    Exactly one of ``bits`` (k = 2^bits, 1..8), ``clusters`` (k in 2..256, index width
    ceil(log2 k)) or ``lossless`` must be given. ``granularity``: per-channel | per-tensor |
    normalized | auto (module docstring). ``calib``: int8 calibration inputs [N, *input shape]
    (validated by :func:`tinycluster.frontends.calib.load_int8_calibration`): codebooks are then
    chosen by each layer's output error and biases corrected; None: the data-free method.
    ``codebooks_in_sram``: whether auto's SRAM cap applies. ``flash_tables``: the percentage of
    the index bytes the planner may spend on FULLY_CONNECTED's flash pair tables; auto keeps that
    much of its allowance free for them (:func:`cost.flash_table_reserve`, recorded as
    ``flash_table_reserve``). ``seed`` is recorded but unused: every step is deterministic.

    Sets ``tensor.clustering`` (None for a layer kept as raw int8), and for layouts with new
    weight scales rewrites the tensor's ``quant`` and the int32 bias (the source quantization
    is kept in ``graph.meta["source_quant"]``). Returns one dict per weight tensor (also in
    ``graph.meta["clustering"] = {"options", "method", "layers"}``) with keys layer, op,
    node_index, tensor, tensor_id, shape, weights, channels, channel_axis, granularity,
    granularity_reason, k, bits, codebooks, weight_cost (:func:`cost.weight_cost`),
    codebook_bytes, index_bytes, map_bytes, footprint_bytes, unique_before/after, changed_weights,
    exact, rms_error, rel_rms_error, snr_db, output_error (relative, calibration data), scales
    (rewritten or not) and candidates (name -> flash bytes and error) where several were tried.
    """
    from ..ops import get_handler
    from .calibrated import SUPPORTED_OPS, collect_stats, copy_graph, correct_biases, requantized_bias

    opts = ClusterOptions(bits=bits, clusters=clusters, lossless=bool(lossless), granularity=granularity).validate()
    k = opts.k
    if any(not n.params for n in graph.nodes):  # the costs and statistics need the resolved params
        from ..importers.tflite import resolve_graph

        resolve_graph(graph)
    use_data = calib is not None and not opts.lossless and k is not None and k < 256
    layers = []
    seen = set()
    for node, t in graph.weight_tensors():
        if t.id in seen or t.data is None or t.data.dtype != np.int8:
            continue  # a weight shared by two ops is clustered once
        seen.add(t.id)
        h = get_handler(node.op)
        axis = h.weight_channel_axis
        if axis is not None and not -t.data.ndim <= axis < t.data.ndim:
            axis = None
        if axis is not None:
            axis %= t.data.ndim
        layers.append((node, t, axis))
    # layers whose weights or bias another op also reads keep their scales and get no data fit
    readers = {}
    for n in graph.nodes:
        for tid in n.inputs:
            readers[tid] = readers.get(tid, 0) + 1

    def own(node):
        return node.op in SUPPORTED_OPS and all(readers.get(tid, 0) <= 1 for tid in node.inputs[1:3] if tid >= 0)

    stats = {}
    orig = None
    if use_data:
        orig = copy_graph(graph)
        stats = collect_stats(graph, calib, [n for n, _, ax in layers if own(n) and ax is not None])
    Ls = [_Layer(graph, n, t, ax, stats.get(n.index) if own(n) else None) for n, t, ax in layers]
    if opts.lossless:
        cand_lists = [_lossless_candidates(L, opts.granularity) for L in Ls]
    else:
        cand_lists = []
        for L in Ls:
            cands = _candidates(L, k, opts.granularity if own(L.node) or opts.granularity != "normalized"
                                else "per-tensor")
            if not own(L.node):  # no new scales for shared tensors
                cands = [c for c in cands if c.scale is None]
            cand_lists.append(cands)

    spent, extra, sram_cap, reserve, gains = 0, None, None, 0, None
    if opts.lossless or opts.granularity != "auto":
        chosen, why = [], []
        for L, cands in zip(Ls, cand_lists):
            c = _smallest(cands) if opts.lossless else cands[0]
            raw = cands[-1]
            if c.cost.flash > raw.cost.flash:  # never larger than int8
                why.append(f"raw int8: {c.name} would take {c.cost.flash} B > {raw.cost.flash} B of int8 weights")
                c = raw
            elif opts.lossless:
                others = ", ".join(f"{o.name} {o.cost.flash}" for o in cands if o is not c)
                why.append(f"{c.name}: smallest exact footprint, {c.cost.flash} B (vs {others})")
            else:
                why.append(f"{c.name} (requested)" if L.axis is not None else f"{c.name} (no channel axis)")
            chosen.append(c)
    else:
        from .cost import flash_table_reserve

        extra = auto_allowance(graph, Ls, cand_lists, k)
        reserve = min(extra, flash_table_reserve(graph, [L.node for L in Ls], _bits_for(k), flash_tables))
        extra -= reserve
        if codebooks_in_sram:
            from ..planner import plan_memory

            sram_cap = int(AUTO_SRAM_FRACTION * plan_memory(graph).arena_size)
        gains = _output_gains(graph, Ls, cand_lists, calib) if use_data else None
        chosen, why, spent = choose_auto(Ls, cand_lists, extra, sram_cap, gains=gains)

    # apply
    src = graph.meta.setdefault("source_quant", {})
    biases = {L.node.inputs[2]: graph.tensors[L.node.inputs[2]].data.copy() for L in Ls
              if len(L.node.inputs) > 2 and L.node.inputs[2] >= 0}
    for L, c in zip(Ls, chosen):
        L.t.clustering = c.cl
        if c.scale is not None:
            from ..ir import QuantParams

            src.setdefault(L.t.id, L.t.quant)
            node = L.node
            if len(node.inputs) > 2 and node.inputs[2] >= 0:
                bt = graph.tensors[node.inputs[2]]
                bt.data = requantized_bias(bt.data.reshape(-1), L.s, c.scale).reshape(bt.data.shape)
            L.t.quant = QuantParams(scale=np.asarray(c.scale, np.float32), zero_point=np.zeros(L.C, np.int64),
                                    axis=L.axis)
            get_handler(node.op).resolve(node, graph)
    corrected, refit_nodes = {}, set()
    if use_data:
        by_node = {L.node.index: i for i, L in enumerate(Ls)}

        def refit(node, Wt, Hn) -> bool:
            i = by_node.get(node.index)
            if i is None:
                return False
            c = _sequential_refit(Ls[i], chosen[i], k, Wt, Hn)
            if c is None:
                return False
            L = Ls[i]
            L.t.clustering = c.cl
            if c.scale is not None:
                from ..ir import QuantParams

                src.setdefault(L.t.id, L.t.quant)
                L.t.quant = QuantParams(scale=np.asarray(c.scale, np.float32), zero_point=np.zeros(L.C, np.int64),
                                        axis=L.axis)
            elif L.t.id in src:
                L.t.quant = src[L.t.id]
            get_handler(node.op).resolve(node, graph)
            chosen[i] = c
            return True

        corrected, refit_nodes = correct_biases(graph, orig, calib, [L.node for L in Ls if own(L.node)], stats,
                                                refit=refit)
    rewritten = graph.meta.setdefault("rewritten", set())
    rewritten.update(tid for tid, b in biases.items() if not np.array_equal(graph.tensors[tid].data, b))

    method = ("lossless" if opts.lossless else
              f"output-aware (calibration data: {len(calib)} inputs{' from ' + calib_source if calib_source else ''}; "
              + ("output error per layer weighted by its gain to the model output, mixed widths, " if gains is not None
                 else "output error per layer, ")
              + "GPTQ assignment, sequential refit, bias correction)" if use_data else
              "data-free (weight error in real units)")
    records = []
    for L, c, reason in zip(Ls, chosen, why):
        node, t = L.node, L.t
        st = clustering_stats(t, c.cl, L.axis, scale=c.scale,
                              source_scale=src[t.id].scale if t.id in src else None)
        rec = {"layer": node.name, "op": node.op, "node_index": node.index, "tensor": t.name, "tensor_id": t.id,
               "shape": list(t.shape), "weights": int(t.size),
               "channels": int(t.data.shape[L.axis]) if L.axis is not None else 1, "channel_axis": L.axis,
               "granularity_reason": reason}
        rec.update(st)
        rec.update({"weight_cost": c.cost.as_dict(), "codebook_bytes": c.cost.codebooks,
                    "index_bytes": c.cost.indices, "map_bytes": c.cost.map, "footprint_bytes": c.cost.flash,
                    "int8_weight_bytes": int(t.size), "scales": "rewritten" if c.scale is not None else "unchanged",
                    "output_error": c.error if L.stats is not None else None})
        if node.index in corrected:
            rec["bias_correction_max_lsb"] = corrected[node.index]
        if use_data and L.stats is not None:
            rec["sequential_refit"] = node.index in refit_nodes
        if gains is not None:
            rec["output_gain"] = gains[Ls.index(L)]
        cands = cand_lists[Ls.index(L)]
        if len(cands) > 2 or opts.lossless:
            rec["candidates"] = {o.name: {"flash_bytes": o.cost.flash, "codebook_bytes": o.cost.codebooks,
                                          "error": o.error} for o in cands}
        records.append(rec)
    meta = {"options": dict(opts.as_dict(), seed=seed), "method": method, "layers": records}
    if extra is not None:
        meta["auto"] = {"extra_bytes_allowed": extra, "extra_bytes_spent": spent, "sram_cap": sram_cap,
                        "flash_table_reserve": reserve}
    graph.meta["clustering"] = meta
    return records
