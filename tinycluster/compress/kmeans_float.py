"""Float weight clustering for the Keras front end (before int8 quantization).

Why cluster in float: the TFLite converter quantizes each output channel of a weight tensor
with its own scale, ``q = round(w / s_c)``. A channel that holds ``k`` distinct float values
therefore holds at most ``k`` distinct int8 values, so the core pipeline
(:mod:`tinycluster.compress.cluster`, ``lossless``) packs it at ``ceil(log2 k)`` bits without
changing a single weight, and the C output stays bit-exact with TFLite Micro on the
converted model. Batch-norm folding multiplies each output channel by one factor, which
keeps that property for per-channel clustering.

Everything here is numpy on one weight array; the Keras side lives in
:mod:`tinycluster.frontends.pipeline`.

Methods
    ``kmeans``   1-D k-means (Lloyd on sorted values, exact nearest-centroid assignment by
                 binary search), initialised by k-means++ (``init="kmeans++"``), evenly
                 spaced between min and max (``"linear"``) or at quantiles of the value
                 distribution (``"density"``).
    ``uniform``  the uniform baseline: symmetric per-channel (or per-tensor) grid with
                 ``2**bits`` levels, ``q = clip(round(w / s), -2**(b-1), 2**(b-1) - 1)``,
                 ``s = max|w| / (2**(b-1) - 1)``; no clustering.

Options shared by both
    ``keep_zero``   exact zeros (from pruning) stay exactly zero: they get their own zero
                    centroid, the other values share the remaining ``k - 1`` centroids.
    ``int4_grid``   centroids are restricted to ``s4 * q`` with integer ``q`` in [-8, 7]
                    (``s4`` per channel), so that after quantization the codebook entries
                    fit in 4 bits (see :mod:`tinycluster.frontends.int4`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

INITS = ("auto", "kmeans++", "linear", "density")


@dataclass
class FloatClustering:
    """Result of clustering one weight array.

    ``centroids``: [n_groups, k] float32 (rows may be padded by repeating a centroid when a
    group has fewer distinct values than k); ``indices``: int array of the weight's shape;
    ``channel_axis``: axis whose position selects the row (None: one row for the tensor).
    """

    centroids: np.ndarray
    indices: np.ndarray
    channel_axis: Optional[int]
    k: int

    @classmethod
    def from_values(cls, values: np.ndarray, per_channel: bool = True) -> "FloatClustering":
        """The clustering an array of (already shared) values describes: each group's distinct
        values are its centroids (output channels along the last axis)."""
        v = np.asarray(values, dtype=np.float32)
        if not per_channel:
            cents, idx = np.unique(v, return_inverse=True)
            return cls(cents.reshape(1, -1), idx.reshape(v.shape), None, int(cents.size))
        flat = v.reshape(-1, v.shape[-1])
        groups = [np.unique(flat[:, c], return_inverse=True) for c in range(flat.shape[1])]
        kk = max(g[0].size for g in groups)
        cents = np.zeros((flat.shape[1], kk), dtype=np.float32)
        idx = np.zeros(flat.shape, dtype=np.int64)
        for c, (cc, ii) in enumerate(groups):
            cents[c, :cc.size] = cc
            cents[c, cc.size:] = cc[-1]
            idx[:, c] = ii.reshape(-1)
        return cls(cents, idx.reshape(v.shape), v.ndim - 1, kk)

    def values(self) -> np.ndarray:
        if self.channel_axis is None:
            return self.centroids[0][self.indices].astype(np.float32)
        idx = np.moveaxis(self.indices, self.channel_axis, -1)  # [..., C]
        c = np.arange(idx.shape[-1])
        out = self.centroids[c, idx]
        return np.moveaxis(out, -1, self.channel_axis).astype(np.float32)


# ---------------------------------------------------------------------------------- 1-D core
def _assign(x: np.ndarray, cents_sorted: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (centroids sorted ascending)."""
    if cents_sorted.size == 1:
        return np.zeros(x.shape, dtype=np.int64)
    mids = (cents_sorted[1:] + cents_sorted[:-1]) * 0.5
    return np.searchsorted(mids, x, side="left")


def _init(x: np.ndarray, k: int, init: str, rng: np.random.Generator, sw=None) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    if init == "linear":
        return np.linspace(lo, hi, k)
    if init == "density":
        return np.quantile(x, (np.arange(k) + 0.5) / k)
    if init == "kmeans++":
        cents = [x[rng.integers(x.size)]]
        d2 = (x - cents[0]) ** 2
        for _ in range(1, k):
            p = d2 if sw is None else d2 * sw
            tot = p.sum()
            if tot <= 0:
                break
            c = x[rng.choice(x.size, p=p / tot)]
            cents.append(c)
            d2 = np.minimum(d2, (x - c) ** 2)
        cents = np.unique(np.asarray(cents, dtype=np.float64))
        if cents.size < k:  # fill with quantiles not already present
            extra = np.quantile(x, (np.arange(k) + 0.5) / k)
            cents = np.unique(np.concatenate([cents, extra]))[:k]
        return cents
    raise ValueError(f"unknown k-means init {init!r}; use one of {', '.join(INITS)}")


def kmeans_1d(x: np.ndarray, k: int, *, init: str = "auto", iters: int = 100,
              rng: Optional[np.random.Generator] = None, sample_weight: Optional[np.ndarray] = None):
    """Lloyd's k-means on a 1-D float array. Returns (sorted centroids [<=k], indices).

    ``init="auto"`` runs Lloyd from the linear, density and k-means++ initialisations and keeps
    the result with the smallest squared error (Lloyd only finds a local optimum, and which
    start is best differs between layers and k). When x has at most k distinct values the
    result is exact (centroids = those values). ``sample_weight`` (>= 0, x's shape) weights each
    value's squared error: centroids become weighted means (activation-aware clustering).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    uniq = np.unique(x)
    if uniq.size <= k:
        return uniq, np.searchsorted(uniq, x)
    rng = rng or np.random.default_rng(0)
    if init == "auto":
        best = None
        for ini in ("linear", "density", "kmeans++"):
            c, i = kmeans_1d(x, k, init=ini, iters=iters, rng=rng, sample_weight=sample_weight)
            d2 = (c[i] - x) ** 2
            sse = float(np.sum(d2 if sample_weight is None else d2 * np.ravel(sample_weight)))
            if best is None or sse < best[0]:
                best = (sse, c, i)
        return best[1], best[2]
    order = np.argsort(x, kind="stable")
    xs = x[order]
    if sample_weight is None:
        sw = np.ones_like(xs)
    else:
        sw = np.maximum(np.asarray(sample_weight, dtype=np.float64).ravel()[order], 0.0)
        sw = sw / sw.mean() if sw.mean() > 0 else np.ones_like(xs)
        sw = np.maximum(sw, 1e-6)  # every value keeps a say, so no cluster is pinned by zero weights
    cents = np.sort(_init(xs, k, init, rng, None if sample_weight is None else sw))
    for _ in range(iters):
        idx = _assign(xs, cents)
        sums = np.bincount(idx, weights=xs * sw, minlength=cents.size)
        cnt = np.bincount(idx, weights=sw, minlength=cents.size)
        new = np.where(cnt > 0, sums / np.where(cnt > 0, cnt, 1), cents)
        # an empty cluster takes the point farthest from its centroid
        if (cnt == 0).any():
            err = np.abs(xs - new[idx])
            for j in np.flatnonzero(cnt == 0):
                p = int(np.argmax(err))
                new[j] = xs[p]
                err[p] = 0.0
        new = np.sort(new)
        if np.allclose(new, cents, rtol=0, atol=1e-12 * max(1.0, float(np.abs(xs).max()))):
            cents = new
            break
        cents = new
    cents = np.unique(cents)
    return cents, _assign(x, cents)


def _snap_to_grid(x: np.ndarray, cents: np.ndarray, step: float, qmin: int, qmax: int):
    """Move centroids to the nearest grid points step*q (q in [qmin, qmax]), merge duplicates,
    re-assign and re-snap twice (a grid-constrained Lloyd)."""
    for _ in range(3):
        q = np.unique(np.clip(np.round(cents / step), qmin, qmax))
        cents = q * step
        idx = _assign(x, cents)
        cnt = np.bincount(idx, minlength=cents.size)
        sums = np.bincount(idx, weights=x, minlength=cents.size)
        means = np.where(cnt > 0, sums / np.maximum(cnt, 1), cents)
        cents = means[cnt > 0]
    q = np.unique(np.clip(np.round(cents / step), qmin, qmax))
    cents = q * step
    return cents, _assign(x, cents)


def _cluster_group(x: np.ndarray, k: int, method: str, init: str, keep_zero: bool,
                   int4_grid: bool, bits: int, rng, sw=None) -> tuple:
    """Cluster one group (a channel or the whole tensor). Returns (centroids, idx)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    if sw is not None:
        sw = np.asarray(sw, dtype=np.float64).ravel()
    amax = float(np.abs(x).max()) if x.size else 0.0
    if amax == 0.0:
        return np.zeros(1), np.zeros(x.shape, dtype=np.int64)
    if method == "uniform":
        qmax = 2 ** (bits - 1) - 1
        if qmax == 0:  # 1 bit: {-s, +s}
            cents = np.array([-amax, amax])
            return cents, (x >= 0).astype(np.int64)
        step = amax / qmax
        q = np.clip(np.round(x / step), -(qmax + 1), qmax)
        uq, idx = np.unique(q, return_inverse=True)
        return uq * step, idx.reshape(-1)
    zero_mask = (x == 0.0) if keep_zero else None
    if zero_mask is not None and zero_mask.any():
        nz = x[~zero_mask]
        if nz.size == 0:
            return np.zeros(1), np.zeros(x.shape, dtype=np.int64)
        c_nz, _ = kmeans_1d(nz, max(1, k - 1), init=init, rng=rng,
                            sample_weight=None if sw is None else sw[~zero_mask])
        if int4_grid:
            step = max(float(nz.max()) / 7.0, float(-nz.min()) / 8.0)
            c_nz, _ = _snap_to_grid(nz, c_nz, step, -8, 7)
            c_nz = c_nz[c_nz != 0.0]
        cents = np.unique(np.concatenate([[0.0], c_nz]))
        idx = _assign(x, cents)
        # zeros map to the zero centroid; non-zeros never do
        zpos = int(np.flatnonzero(cents == 0.0)[0])
        idx[zero_mask] = zpos
        if c_nz.size:
            nzi = _assign(x[~zero_mask], c_nz)
            idx[~zero_mask] = np.searchsorted(cents, c_nz)[nzi]
        return cents, idx
    cents, idx = kmeans_1d(x, k, init=init, rng=rng, sample_weight=sw)
    if int4_grid:
        step = max(float(x.max()) / 7.0, float(-x.min()) / 8.0)
        cents, idx = _snap_to_grid(x, cents, step, -8, 7)
    return cents, idx


def channel_axis_of(kind: str, ndim: int) -> int:
    """Output-channel axis of a Keras kernel: Dense [in, out] and Conv2D [h, w, in, out] -> -1;
    DepthwiseConv2D [h, w, in, mult] -> the pair (in, mult) is the channel, handled by the caller
    reshaping to [h, w, in*mult]."""
    return ndim - 1


def cluster_array(w: np.ndarray, k: int, *, per_channel: bool = True, method: str = "kmeans",
                  init: str = "auto", keep_zero: bool = True, int4_grid: bool = False,
                  seed: int = 0, importance: Optional[np.ndarray] = None) -> FloatClustering:
    """Cluster a weight array whose output channels run along the last axis.

    Returns a :class:`FloatClustering` with ``channel_axis = w.ndim - 1`` (per channel) or None.
    ``k`` is the number of clusters per group (for ``method="uniform"``, ``k = 2**bits``).
    ``importance``: per-weight weights of the squared error, broadcastable to ``w.shape`` (e.g.
    the mean squared input activation each weight multiplies, shape ``w.shape[:-1] + (1,)``).
    """
    if method not in ("kmeans", "uniform"):
        raise ValueError(f"unknown clustering method {method!r}")
    if method == "kmeans" and init not in INITS:
        raise ValueError(f"unknown k-means init {init!r}; use one of {', '.join(INITS)}")
    rng = np.random.default_rng(seed)
    bits = max(1, int(np.ceil(np.log2(max(k, 2)))))
    w = np.asarray(w, dtype=np.float64)
    imp = None
    if importance is not None and method == "kmeans":
        imp = np.broadcast_to(np.asarray(importance, dtype=np.float64), w.shape)
    if per_channel:
        flat = w.reshape(-1, w.shape[-1])  # [n, C]
        C = flat.shape[1]
        impf = None if imp is None else imp.reshape(-1, w.shape[-1])
        results = [_cluster_group(flat[:, c], k, method, init, keep_zero, int4_grid, bits, rng,
                                  None if impf is None else impf[:, c])
                   for c in range(C)]
        kk = max(r[0].size for r in results)
        cents = np.zeros((C, kk))
        idx = np.zeros(flat.shape, dtype=np.int64)
        for c, (cc, ii) in enumerate(results):
            cents[c, :cc.size] = cc
            cents[c, cc.size:] = cc[-1]
            idx[:, c] = ii
        return FloatClustering(cents.astype(np.float32), idx.reshape(w.shape), w.ndim - 1, kk)
    cc, ii = _cluster_group(w, k, method, init, keep_zero, int4_grid, bits, rng, imp)
    return FloatClustering(cc.reshape(1, -1).astype(np.float32), ii.reshape(w.shape), None, cc.size)


def affine_correct(original: np.ndarray, fc: FloatClustering) -> FloatClustering:
    """Mean/variance-preserving correction of the centroids, per group.

    Clustering shrinks a weight distribution (each value moves to its cluster mean), so the
    variance of the clustered weights is below the original's. Map every centroid
    ``c -> a * c + b`` so that the clustered group has the original mean and standard
    deviation. When the group holds exact zeros (pruned), only the scale is corrected
    (``b = 0``) so that zeros stay zero.
    """
    cents = fc.centroids.astype(np.float64).copy()
    vals = fc.values().astype(np.float64)
    orig = np.asarray(original, dtype=np.float64)
    if fc.channel_axis is None:
        groups = [(slice(None), 0)]
        o_g = [orig.ravel()]
        v_g = [vals.ravel()]
    else:
        o2 = orig.reshape(-1, orig.shape[-1])
        v2 = vals.reshape(-1, vals.shape[-1])
        o_g = [o2[:, c] for c in range(o2.shape[1])]
        v_g = [v2[:, c] for c in range(v2.shape[1])]
        groups = [(c, c) for c in range(o2.shape[1])]
    for (_, row), o, v in zip(groups, o_g, v_g):
        sv = v.std()
        if sv <= 0:
            continue
        a = o.std() / sv
        if (o == 0).any() or (cents[row] == 0).any():
            cents[row] = cents[row] * a
        else:
            b = o.mean() - a * v.mean()
            cents[row] = a * cents[row] + b
    return FloatClustering(cents.astype(np.float32), fc.indices, fc.channel_axis, fc.k)
