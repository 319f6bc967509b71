"""Codebook fitting for an int8 graph: per-layer output error, GPTQ assignment, bias correction.

The int8 ``.tflite`` path's counterpart of the Keras front end's refit
(:mod:`tinycluster.compress.output_aware`, which it reuses for per-channel codebooks). What
matters is not the weight error but the error in each layer's output: for an output channel
whose weights change by ``e`` (real units), the mean squared output error is ``e^T H e`` with
``H`` the second moment of the input vectors that channel multiplies.

Statistics (``--calib``) come from the graph itself: the project's bit-exact numpy op
references (:func:`tinycluster.executor.run_graph`) compute the int8 input of every weighted
layer on the calibration inputs. Input vectors are offset by the input zero point (the real
input divided by its scale), so SAME padding contributes zeros as in TFLite:
conv: im2col patches in the filter's ``(kh, kw, cin)`` order; depthwise: one ``kh*kw`` patch
per channel; fully connected: the input row. Without calibration data ``H`` is the identity
(``None`` below): the error is the weight error in real units, the data-free method.

Fits (each returns a :class:`Fit`: integer codebooks, per-channel scales, indices, error):

- :func:`fit_normalized`: one int8 codebook shared by every channel, each channel with its
  own refit scale, ``w[c] ~= s[c] * cb[idx[c]]`` (design doc section 1);
- :func:`fit_per_channel_oa`: a codebook per channel, exact 1-D k-means of the channel's int8
  values refined by :func:`tinycluster.compress.output_aware.refit_int8` on the channel's
  existing grid and on a new one (``max|c| / 127``), per channel the better.

Assignments of the normalized fit are made by GPTQ's error feedback (:func:`gptq_assign`).

Bias correction (:func:`correct_biases`, with calibration data): the layer's mean output error
(the clustered layer on the clustered stream against the original layer on the original stream,
layer by layer in graph order, so upstream drift is corrected too) is moved into the int32 bias,
which is added before requantization. Because of that step the fits minimise the *centred*
error ``e^T Cov e`` for layers with a bias. A layer whose scales change gets its int32 bias
requantized to the new bias scale ``input_scale * s'[c]`` in any case.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import numpy as np


QMAX = 127
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
MAX_ROWS = 1 << 14  # input vectors per layer (an even subsample)
SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


# ------------------------------------------------------------------------------ layout of weights
def weight_matrix(node, q: np.ndarray) -> np.ndarray:
    """Weights ``q`` (the op's filter shape) as [C, d]: one row per output channel, in the order
    of the input vectors of :func:`input_vectors`."""
    q = np.asarray(q)
    if node.op == "DEPTHWISE_CONV_2D":  # [1, kh, kw, C]
        return q.reshape(-1, q.shape[-1]).T
    return q.reshape(q.shape[0], -1)  # CONV_2D [C, kh, kw, cin], FULLY_CONNECTED [C, in]


def matrix_to_weight(node, m: np.ndarray, shape) -> np.ndarray:
    """Inverse of :func:`weight_matrix`."""
    if node.op == "DEPTHWISE_CONV_2D":
        return np.asarray(m).T.reshape(shape)
    return np.asarray(m).reshape(shape)


def real_rows(node, t) -> np.ndarray:
    """Real weights of tensor ``t`` as [C, d] (float64)."""
    Q = weight_matrix(node, t.data).astype(np.float64)
    s = np.asarray(t.quant.scale, dtype=np.float64)
    zp = np.asarray(t.quant.zero_point, dtype=np.float64)
    if s.size == 1:
        return (Q - zp[0]) * s[0]
    return (Q - zp[:, None]) * s[:, None]


def row_scales(t, C: int) -> np.ndarray:
    """Weight scale of each output channel (a per-tensor scale repeated)."""
    s = np.asarray(t.quant.scale, dtype=np.float64)
    return np.full(C, s[0]) if s.size == 1 else s.copy()


# ------------------------------------------------------------------------------ statistics
def input_vectors(node, x: np.ndarray) -> Optional[np.ndarray]:
    """Input vectors of one sample (``x``: the node's int8 input), offset by the input zero
    point, float64: conv [positions, kh*kw*cin], depthwise [positions, kh*kw, cin], FC
    [rows, in]. None for grouped convolutions."""
    from ..ops.conv_2d import pad_input, taps

    p = node.params
    if node.op == "FULLY_CONNECTED":
        return np.asarray(x).reshape(p["batches"], p["in_features"]).astype(np.float64) + p["input_offset"]
    if node.op == "CONV_2D" and p["filter_in_c"] != p["in_c"]:
        return None
    xi = np.asarray(x).reshape(p["in_h"], p["in_w"], p["in_c"]).astype(np.int64) + p["input_offset"]
    xp = pad_input(xi, p)
    t = np.stack([taps(xp, p, ky, kx) for ky in range(p["k_h"]) for kx in range(p["k_w"])], axis=2)
    n = p["out_h"] * p["out_w"]
    if node.op == "DEPTHWISE_CONV_2D":
        return t.reshape(n, p["k_h"] * p["k_w"], p["in_c"]).astype(np.float64)
    return t.reshape(n, -1).astype(np.float64)


@dataclass
class LayerStats:
    """Moments of a layer's input vectors: ``H`` [d, d] (or [C, d, d] for depthwise) is the
    covariance, ``mu`` [d] (or [C, d]) the mean, ``n`` the number of vectors."""
    H: np.ndarray
    mu: np.ndarray
    n: int

    def second_moment(self) -> np.ndarray:
        if self.H.ndim == 2:
            return self.H + np.outer(self.mu, self.mu)
        return self.H + np.einsum("ci,cj->cij", self.mu, self.mu)


class _Accumulator:
    """Running sums of one node's input vectors (at most ``per`` positions per sample, an even
    subsample); ``moments=False`` keeps only the mean."""

    def __init__(self, node, per: int, moments: bool = True):
        self.node, self.per, self.moments = node, per, moments
        self.S = self.M = None
        self.n = 0

    def add(self, x) -> bool:
        v = input_vectors(self.node, x)
        if v is None:
            return False
        if v.shape[0] > self.per:
            v = v[np.linspace(0, v.shape[0] - 1, self.per).astype(np.int64)]
        if v.ndim == 3:  # depthwise [n, taps, cin]
            m = v.sum(0).T
            if self.moments:
                vt = np.ascontiguousarray(v.transpose(2, 1, 0))  # [cin, taps, n]
                s = vt @ vt.transpose(0, 2, 1)
        else:
            m = v.sum(0)
            if self.moments:
                s = v.T @ v
        if self.moments:
            self.S = s if self.S is None else self.S + s
        self.M = m if self.M is None else self.M + m
        self.n += v.shape[0]
        return True

    def mean(self) -> np.ndarray:
        mu = self.M / self.n
        if mu.ndim == 2:  # [cin, taps] -> output channel i*mult + m reads input channel i
            mu = np.repeat(mu, int(self.node.params["depth_multiplier"]), axis=0)
        return mu

    def stats(self) -> LayerStats:
        mu = self.M / self.n
        if mu.ndim == 2:
            H = self.S / self.n - np.einsum("ci,cj->cij", mu, mu)
            mult = int(self.node.params["depth_multiplier"])
            if mult > 1:
                H, mu = np.repeat(H, mult, axis=0), np.repeat(mu, mult, axis=0)
        else:
            H = self.S / self.n - np.outer(mu, mu)
        return LayerStats(H=H, mu=mu, n=self.n)


class _PairAccumulator:
    """Input vectors of one node at the same positions on two streams: the clustered graph's
    (``n``) and the original graph's (``o``). Keeps the moments the sequential refit needs: the
    covariance of the clustered inputs and the cross-covariance of original and clustered ones."""

    def __init__(self, node, per: int):
        self.node, self.per = node, per
        self.Snn = self.Son = self.Mn = self.Mo = None
        self.n = 0

    def add(self, xn, xo) -> bool:
        vn, vo = input_vectors(self.node, xn), input_vectors(self.node, xo)
        if vn is None or vo is None:
            return False
        if vn.shape[0] > self.per:
            pick = np.linspace(0, vn.shape[0] - 1, self.per).astype(np.int64)
            vn, vo = vn[pick], vo[pick]
        if vn.ndim == 3:  # depthwise [n, taps, cin]
            tn = np.ascontiguousarray(vn.transpose(2, 1, 0))
            to = np.ascontiguousarray(vo.transpose(2, 1, 0))
            snn, son = tn @ tn.transpose(0, 2, 1), to @ tn.transpose(0, 2, 1)
            mn, mo = vn.sum(0).T, vo.sum(0).T
        else:
            snn, son, mn, mo = vn.T @ vn, vo.T @ vn, vn.sum(0), vo.sum(0)
        if self.Snn is None:
            self.Snn, self.Son, self.Mn, self.Mo = snn, son, mn, mo
        else:
            self.Snn += snn
            self.Son += son
            self.Mn += mn
            self.Mo += mo
        self.n += vn.shape[0]
        return True

    def mean(self) -> np.ndarray:
        mu = self.Mn / self.n
        if mu.ndim == 2:
            mu = np.repeat(mu, int(self.node.params["depth_multiplier"]), axis=0)
        return mu

    def moments(self):
        """(covariance of the clustered inputs, cross-covariance E[(x_o - mu_o)(x_n - mu_n)^T]),
        [d, d] or per output channel [C, d, d] for depthwise."""
        mn, mo = self.Mn / self.n, self.Mo / self.n
        if mn.ndim == 2:
            Hn = self.Snn / self.n - np.einsum("ci,cj->cij", mn, mn)
            Con = self.Son / self.n - np.einsum("ci,cj->cij", mo, mn)
            mult = int(self.node.params["depth_multiplier"])
            if mult > 1:
                Hn, Con = np.repeat(Hn, mult, axis=0), np.repeat(Con, mult, axis=0)
            return Hn, Con
        return self.Snn / self.n - np.outer(mn, mn), self.Son / self.n - np.outer(mo, mn)


#: the sequential refit needs at least this many input vectors per input dimension
REFIT_MIN_ROWS_PER_DIM = 4


def compensated_target(W: np.ndarray, Hn: np.ndarray, Con: np.ndarray, damp: float = 0.01) -> np.ndarray:
    """The real weights that best map the clustered stream's inputs onto the original layer's
    output (least squares, centred: the mean goes to the bias): ``W* = W Con Hn^-1``, written
    ``W + W (Con - Hn) (Hn + damp*mean(diag) I)^-1`` so that the damping only shrinks the
    correction (W* = W when both streams agree). ``W`` [C, d]; ``Hn``, ``Con`` [d, d] or
    [C, d, d]."""
    d = Hn.shape[-1]
    diag = np.einsum("...ii->...i", Hn)
    lam = damp * np.maximum(diag.mean(axis=-1), 1e-12)
    Hd = Hn + lam[..., None, None] * np.eye(d)
    D = Con - Hn
    if Hn.ndim == 2:
        return W + np.linalg.solve(Hd, (W @ D).T).T
    return W + np.linalg.solve(Hd, np.einsum("cd,cde->ce", W, D)[..., None])[..., 0]


def _per_sample(n_samples: int, max_rows: int) -> int:
    return max(16, max_rows // max(n_samples, 1))


def collect_stats(graph, x_cal, nodes, max_rows: int = MAX_ROWS) -> dict:
    """{node index: :class:`LayerStats`} of the weighted ``nodes`` of ``graph`` (resolved) on
    the int8 calibration inputs ``x_cal`` [N, *input shape], run through the original graph."""
    from ..executor import run_graph

    xs = list(x_cal)
    acc = {n.index: _Accumulator(n, _per_sample(len(xs), max_rows)) for n in nodes}
    ok = {i: True for i in acc}
    for x in xs:
        vals = run_graph(graph, x, return_all=True)
        for n in nodes:
            if ok[n.index]:
                ok[n.index] = acc[n.index].add(vals[n.inputs[0]])
    return {i: a.stats() for i, a in acc.items() if ok[i] and a.n}


# ------------------------------------------------------------------------------ GPTQ assignment
def _chol_inv_upper(H: np.ndarray, damp: float) -> np.ndarray:
    """Upper Cholesky factor of ``(H + damp*mean(diag) I)^-1`` (GPTQ's ``Hinv``), for [d, d] or
    [C, d, d]; an input that is always zero gets a unit diagonal."""
    d = H.shape[-1]
    diag = np.einsum("...ii->...i", H)
    lam = damp * np.maximum(diag.mean(axis=-1), 1e-12)
    Hd = H + lam[..., None, None] * np.eye(d)
    dead = diag <= 0
    if np.any(dead):
        Hd = Hd.copy()
        idx = np.nonzero(dead)
        Hd[idx + (idx[-1],)] = 1.0
    Linv = np.linalg.inv(np.linalg.cholesky(Hd))
    Hinv = np.swapaxes(Linv, -1, -2) @ Linv
    return np.swapaxes(np.linalg.cholesky(Hinv), -1, -2)


def _nearest(levels: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Index of the nearest entry of each row of ``levels`` [C, m] for ``w`` [C, ...]."""
    w = np.asarray(w)
    if w.ndim == 1:
        return np.argmin(np.abs(levels - w[:, None]), axis=1)
    return np.argmin(np.abs(levels[:, None, :] - w[:, :, None]), axis=2)


class GPTQFactor:
    """GPTQ's visiting order and ``Hinv`` factor of one ``H`` (computed once per layer)."""

    def __init__(self, H: np.ndarray, damp: float = 0.01):
        self.shared = H.ndim == 2
        C = 1 if self.shared else H.shape[0]
        diag = np.diag(H) if self.shared else np.einsum("cii->i", H) / C
        self.perm = np.argsort(-diag, kind="stable")
        Hp = H[np.ix_(self.perm, self.perm)] if self.shared else H[:, self.perm][:, :, self.perm]
        self.U = _chol_inv_upper(Hp, damp)


def gptq_assign(W: np.ndarray, H: Optional[np.ndarray], levels: np.ndarray, damp: float = 0.01,
                factor: Optional[GPTQFactor] = None) -> np.ndarray:
    """Index of every weight into its channel's values, chosen with GPTQ's error feedback.

    ``W`` [C, d] weights (real units), ``H`` [d, d] (shared by the channels), [C, d, d] or None
    (identity: plain nearest values), ``levels`` [C, m] the values each channel may take.
    Positions are visited in order of falling ``diag(H)``; the rounding error of each is
    compensated on the positions still to come (the least-squares correction under ``H``).
    Returns indices [C, d] into ``levels``."""
    W = np.array(W, dtype=np.float64)
    if H is None:
        return _nearest(levels, W)
    C, d = W.shape
    f = factor if factor is not None else GPTQFactor(H, damp)
    shared, perm, U = f.shared, f.perm, f.U
    Wp = W[:, perm]
    idx = np.empty((C, d), dtype=np.int64)
    rows = np.arange(C)
    for i in range(d):
        w = Wp[:, i]
        j = _nearest(levels, w)
        idx[:, i] = j
        if i + 1 < d:
            if shared:
                Wp[:, i + 1:] -= np.outer((w - levels[rows, j]) / U[i, i], U[i, i + 1:])
            else:
                Wp[:, i + 1:] -= ((w - levels[rows, j]) / U[:, i, i])[:, None] * U[:, i, i + 1:]
    out = np.empty_like(idx)
    out[:, perm] = idx
    return out


def quad_cost(E: np.ndarray, H: Optional[np.ndarray]) -> np.ndarray:
    """``e_c^T H e_c`` per channel for errors ``E`` [C, d] (H None: the identity)."""
    if H is None:
        return np.einsum("cd,cd->c", E, E)
    if H.ndim == 2:
        return np.einsum("cd,cd->c", E @ H, E)
    return np.einsum("cd,cde,ce->c", E, H, E)


def _times_h(X: np.ndarray, H: Optional[np.ndarray]) -> np.ndarray:
    """Rows of ``X`` [C, d] times H."""
    if H is None:
        return X
    return X @ H if H.ndim == 2 else np.einsum("cd,cde->ce", X, H)


def _gram_sum(idx: np.ndarray, H: Optional[np.ndarray], k: int, weights: np.ndarray) -> np.ndarray:
    """``sum_c weights[c] * A_c^T H A_c`` (A_c the one-hot [d, k] assignment of channel c):
    block sums of H per pair of codebook entries, O(d^2) per channel."""
    C, d = idx.shape
    G = np.zeros((k, k))
    if H is None:
        counts = np.zeros((C, k))
        np.add.at(counts, (np.repeat(np.arange(C), d), idx.reshape(-1)), 1.0)
        return np.diag((weights[:, None] * counts).sum(0))
    for c in range(C):
        order = np.argsort(idx[c], kind="stable")
        used, starts = np.unique(idx[c][order], return_index=True)
        Hc = H if H.ndim == 2 else H[c]
        rows = np.add.reduceat(Hc[order], starts, axis=0)
        blk = np.add.reduceat(rows[:, order], starts, axis=1)
        G[np.ix_(used, used)] += weights[c] * blk
    return G


def _assign_sums(idx: np.ndarray, vec: np.ndarray, k: int) -> np.ndarray:
    """[C, k]: per channel, the sum of ``vec`` [C, d] over the positions assigned to each entry."""
    C = idx.shape[0]
    out = np.zeros((C, k))
    np.add.at(out, (np.repeat(np.arange(C), idx.shape[1]), idx.reshape(-1)), vec.reshape(-1))
    return out


# ------------------------------------------------------------------------------ fits
@dataclass
class Fit:
    """A fitted layer: ``codebooks`` int [G, k] (G = 1: normalized; C: per channel), ``cmap``
    [C] codebook of each channel, ``idx`` [C, d], ``scale`` [C] float32 weight scales, ``cost``
    [C] the error ``e^T H e`` per channel."""
    codebooks: np.ndarray
    cmap: np.ndarray
    idx: np.ndarray
    scale: np.ndarray
    cost: np.ndarray

    def values(self) -> np.ndarray:
        return self.codebooks[self.cmap[:, None], self.idx]

    def real(self) -> np.ndarray:
        return self.values() * self.scale.astype(np.float64)[:, None]


def _initial_codebook(U: np.ndarray, weight: np.ndarray, k: int) -> np.ndarray:
    """k integer levels for normalized values ``U`` (in [-QMAX, QMAX]) by exact weighted 1-D
    k-means of their rounded histogram."""
    from .cluster import kmeans_1d

    v = np.clip(np.rint(U), -QMAX, QMAX).astype(np.int64).reshape(-1) + 128
    hist = np.bincount(v, weights=np.broadcast_to(weight, U.shape).reshape(-1), minlength=256)
    cnt = np.bincount(v, minlength=256)
    present = np.flatnonzero(cnt)
    wts = hist[present]
    if not np.all(wts > 0):
        wts = cnt[present].astype(np.float64)
    cent, _, _ = kmeans_1d(present - 128, wts, k)
    return cent.astype(np.int64)


def _refit_scales(W, V, H, floor):
    """Least-squares per-channel scale of values ``V`` [C, d] towards ``W`` under ``H``."""
    VH = _times_h(V, H)
    num = np.einsum("cd,cd->c", VH, W)
    den = np.einsum("cd,cd->c", VH, V)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(den > 0, num / np.where(den > 0, den, 1.0), floor)
    return np.maximum(s, floor)


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def fit_normalized(W: np.ndarray, H: Optional[np.ndarray], k: int, iters: int = 6, damp: float = 0.01) -> Fit:
    """One int8 codebook of at most ``k`` levels shared by every channel, each channel with its
    own scale: ``w[c] ~= s[c] * cb[idx[c]]``.

    Start: each channel divided by its largest magnitude, the codebook the exact weighted 1-D
    k-means of those normalized values (weight: the error each one costs, ``s^2 diag(H)``).
    Then alternate: GPTQ assignment (nearest values when H is None), least-squares scales,
    least-squares codebook (rounded to int8 with its largest level at +-127, the scales
    absorbing the factor). Keeps the iterate with the least error; scales are float32 as the
    ``.tflite`` stores them. A channel of zeros gets an exact zero level."""
    W = np.asarray(W, dtype=np.float64)
    C, d = W.shape
    amax = np.abs(W).max(axis=1)
    live = amax > 0
    ref = float(amax[live].mean()) if live.any() else 1.0
    amax = np.where(live, amax, ref)
    floor = 1e-4 * amax / QMAX
    diag = np.ones((1, d)) if H is None else (np.diag(H)[None, :] if H.ndim == 2 else np.einsum("cii->ci", H))
    cb = _initial_codebook(W / amax[:, None] * QMAX, (amax[:, None] / QMAX) ** 2 * np.maximum(diag, 1e-30), k)
    if (~live).any() and not np.any(cb == 0):
        cb[np.argmin(np.abs(cb))] = 0
    s = amax / QMAX
    HW = _times_h(W, H)
    factor = None if H is None else GPTQFactor(H, damp)
    best = None
    for it in range(iters):
        idx = gptq_assign(W, H, _f32(s)[:, None] * cb[None, :].astype(np.float64), damp, factor)
        V = cb[idx].astype(np.float64)
        s = _refit_scales(W, V, H, floor)
        cost = quad_cost(W - _f32(s)[:, None] * V, H)
        if best is None or cost.sum() < best.cost.sum():
            best = Fit(cb.reshape(1, -1).copy(), np.zeros(C, np.int64), idx, s.astype(np.float32), cost)
        if it == iters - 1:
            break
        # least-squares codebook with assignments and scales fixed
        m = cb.size
        G = _gram_sum(idx, H, m, s * s)
        r = (_assign_sums(idx, HW, m) * s[:, None]).sum(0)
        used = np.diag(G) > 0
        cbf = cb.astype(np.float64)
        if used.any():
            Gu = G[np.ix_(used, used)] + 1e-9 * np.trace(G) / used.sum() * np.eye(int(used.sum()))
            try:
                cbf[used] = np.linalg.solve(Gu, r[used])
            except np.linalg.LinAlgError:
                pass
        top = float(np.max(np.abs(cbf)))
        if top == 0:
            break
        f = top / QMAX
        cb = np.unique(np.clip(np.rint(cbf / f), -QMAX, QMAX).astype(np.int64))
        if (~live).any() and not np.any(cb == 0):
            cb[np.argmin(np.abs(cb))] = 0
            cb = np.unique(cb)
        s = s * f
    return best


def fit_per_channel_oa(W: np.ndarray, H: np.ndarray, k: int, s_old: np.ndarray, Q: np.ndarray,
                       new_grid: bool = False) -> Fit:
    """Per-channel codebooks of at most ``k`` levels: exact 1-D k-means of each channel's int8
    values ``Q`` [C, d], then the output-aware refit of :func:`output_aware.refit_int8`
    (least-squares centroids, grid points, single-weight moves) on the channel's existing grid
    ``s_old``, and with ``new_grid`` also on a new one (``max|c| / 127``: worth it for a
    per-tensor-quantized layer, whose channels do not use the whole int8 range); per channel
    the fit with less error. A channel with at most k distinct values stays exact."""
    from .cluster import kmeans_1d
    from .output_aware import refit_int8

    W = np.asarray(W, dtype=np.float64)
    C, d = W.shape
    init = np.empty_like(W)
    exact = np.zeros(C, dtype=bool)
    for c in range(C):
        vals, inv, cnt = np.unique(Q[c], return_inverse=True, return_counts=True)
        exact[c] = vals.size <= k
        cent, assign, _ = kmeans_1d(vals, cnt.astype(np.float64), k)
        init[c] = cent[assign[inv.reshape(-1)]] * s_old[c]
    cands = []
    for grid in ((s_old, None) if new_grid else (s_old,)):
        V = refit_int8(W.T, init.T, H, grid=grid).T
        if grid is None:
            am = np.abs(V).max(axis=1)
            scale = np.where(am > 0, am / QMAX, s_old).astype(np.float32)
        else:
            scale = s_old.astype(np.float32)
        ints = np.clip(np.rint(V / _f32(scale)[:, None]), -QMAX, QMAX).astype(np.int64)
        cands.append((ints, scale, quad_cost(W - ints * _f32(scale)[:, None], H)))
    if len(cands) == 1:
        cands.append(cands[0])
    pick = (cands[1][2] < cands[0][2]) & ~exact
    ints = np.where(pick[:, None], cands[1][0], cands[0][0])
    ints[exact] = Q[exact]
    scale = np.where(pick, cands[1][1], s_old.astype(np.float32)).astype(np.float32)
    cost = quad_cost(W - ints * _f32(scale)[:, None], H)
    cbs = np.zeros((C, k), dtype=np.int64)
    idx = np.zeros((C, d), dtype=np.int64)
    for c in range(C):
        u, inv = np.unique(ints[c], return_inverse=True)
        cbs[c, :u.size] = u
        cbs[c, u.size:] = u[-1]
        idx[c] = inv.reshape(-1)
    return Fit(cbs, np.arange(C), idx, scale, cost)


# ------------------------------------------------------------------------------ biases
def corrected_bias(qo, qn, b_o, mu_old, mu_new, s_o, s_n) -> np.ndarray:
    """Bias correction: the int32 bias that keeps each output channel's mean accumulator (in real
    units) where the original weights ``qo`` (scales ``s_o``, bias ``b_o``) put it, for weights
    ``qn`` with scales ``s_n``, given the mean input rows ``mu_old`` / ``mu_new`` each sees
    ([D], or [C, D] per channel); saturated."""
    def dot(q, mu):
        return q @ mu if mu.ndim == 1 else np.einsum("cd,cd->c", q, mu)

    old, new = dot(qo, mu_old) + b_o, dot(qn, mu_new)
    return np.clip(np.rint(s_o / _f32(s_n) * old - new), INT32_MIN, INT32_MAX).astype(np.int32)


def requantized_bias(b_old: np.ndarray, s_old: np.ndarray, s_new: np.ndarray) -> np.ndarray:
    """int32 bias for new weight scales: ``round(b * s_old / s_new)``, saturated."""
    b = np.asarray(b_old, dtype=np.float64) * (np.asarray(s_old, np.float64) / _f32(s_new))
    return np.clip(np.rint(b), INT32_MIN, INT32_MAX).astype(np.int32)


class _Stream:
    """Calibration inputs carried layer by layer through a graph (the clustered one: each node
    runs with the weights, scales and biases rewritten so far)."""

    def __init__(self, graph, x_cal):
        from ..ops import get_handler

        self.graph, self.get_handler = graph, get_handler
        tin = graph.tensors[graph.inputs[0]]
        self.vals = {graph.inputs[0]: [np.asarray(x).astype(tin.dtype).reshape(tin.shape) for x in x_cal]}
        self.n = len(self.vals[graph.inputs[0]])
        self.left = {}
        for n in graph.nodes:
            for tid in n.inputs:
                if tid >= 0:
                    self.left[tid] = self.left.get(tid, 0) + 1

    def inputs(self, node):
        return self.vals.get(node.inputs[0])

    def advance(self, node):
        """Run ``node`` on every sample; drop the values no later node reads."""
        from ..executor import effective_value

        g, vals = self.graph, self.vals
        h = self.get_handler(node.op)
        consts = [None if tid < 0 or tid in vals else effective_value(g.tensors[tid]) for tid in node.inputs]
        outs = [[] for _ in node.outputs]
        for s in range(self.n):
            args = [vals[tid][s] if tid >= 0 and tid in vals else c for tid, c in zip(node.inputs, consts)]
            for j, r in enumerate(h.reference(node, g, args)):
                outs[j].append(np.asarray(r).reshape(g.tensors[node.outputs[j]].shape))
        for tid, o in zip(node.outputs, outs):
            vals[tid] = o
        for tid in node.inputs:
            if tid >= 0 and tid in self.left:
                self.left[tid] -= 1
                if self.left[tid] == 0:
                    vals.pop(tid, None)


def correct_biases(graph, orig, x_cal, nodes, stats: dict, max_rows: int = MAX_ROWS, refit=None) -> dict:
    """Bias correction of the clustered weighted ``nodes`` of ``graph`` against ``orig`` (the
    graph before clustering, same structure) on the int8 calibration inputs ``x_cal``.

    In graph order, each node's int32 bias becomes
    ``round(s_o/s_n * (mu_o . q_o + b_o) - mu_n . q_n)`` per channel, where ``q_o, b_o, s_o`` are
    the original weights, bias and weight scale, ``q_n, s_n`` the clustered ones, ``mu_o`` the
    mean input vector of the original layer on the original graph (``stats``: the
    :func:`collect_stats` of ``orig`` on the same inputs) and ``mu_n`` that of the clustered
    layer in the clustered graph, which already carries the corrected upstream layers: the mean
    of the layer's accumulator, in real units, is then the original one.

    ``refit`` (sequential refit): a callable ``refit(node, W_target, Hn) -> bool`` called for each
    node before its bias is corrected, with the compensated target of :func:`compensated_target`
    (the original layer's output as a function of the clustered stream's inputs) and the
    covariance of those inputs; it may re-fit the node's clustering (same layout and width) and
    returns whether it did. Needs the original graph run alongside (a second stream).
    Returns {node index: largest |change| of the bias beyond plain requantization (LSB)} and,
    with ``refit``, also the set of refit node indices: ``(corrected, refit_nodes)``."""
    from ..executor import effective_value
    from ..ops import get_handler

    todo = {n.index for n in nodes}
    st = _Stream(graph, x_cal)
    so = _Stream(orig, x_cal) if refit is not None else None
    per = _per_sample(st.n, max_rows)
    out, done = {}, set()
    for i, node in enumerate(graph.nodes):
        on = orig.nodes[i]
        if node.index in todo and node.index in stats and len(node.inputs) > 2 and node.inputs[2] >= 0:
            h = get_handler(node.op)
            t_n, t_o = graph.tensors[node.inputs[h.weight_input]], orig.tensors[on.inputs[h.weight_input]]
            if so is not None:
                acc = _PairAccumulator(node, per)
                ok = all(acc.add(xn, xo) for xn, xo in zip(st.inputs(node), so.inputs(on)))
                if ok and acc.n >= REFIT_MIN_ROWS_PER_DIM * weight_matrix(on, t_o.data).shape[1]:
                    Hn, Con = acc.moments()
                    if refit(node, compensated_target(real_rows(on, t_o), Hn, Con), Hn):
                        done.add(node.index)
            else:
                acc = _Accumulator(node, per, moments=False)
                ok = all(acc.add(x) for x in st.inputs(node))
            if ok:
                qo = weight_matrix(on, t_o.data).astype(np.float64)
                qn = weight_matrix(node, effective_value(t_n)).astype(np.float64)
                C = qo.shape[0]
                s_o, s_n = row_scales(t_o, C), row_scales(t_n, C)
                b_o = np.asarray(orig.tensors[on.inputs[2]].data).reshape(-1).astype(np.float64)
                b = corrected_bias(qo, qn, b_o, stats[node.index].mu, acc.mean(), s_o, s_n)
                bt = graph.tensors[node.inputs[2]]
                plain = requantized_bias(b_o, s_o, s_n)
                out[node.index] = int(np.max(np.abs(b.astype(np.int64) - plain))) if b.size else 0
                bt.data = b.reshape(bt.data.shape)
        st.advance(node)
        if so is not None:
            so.advance(on)
    return (out, done) if refit is not None else out


def copy_graph(graph):
    """A deep copy of ``graph`` (the original, kept for bias correction)."""
    return copy.deepcopy(graph)
