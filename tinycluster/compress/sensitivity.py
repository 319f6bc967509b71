"""Per-layer index widths from a sensitivity search.

1. For each weighted layer and each candidate number of clusters k (powers of two and the
   midpoints 3, 6, 12, ...: a k between two powers of two uses the wider index but a smaller
   codebook), cluster that layer alone and measure the error of the model's output on
   calibration inputs: ``err[l][k] = mean((y_clustered - y_float)**2) / mean(y_float**2)``
   (relative output error; the float model is the reference, all other layers unchanged).
2. Assume the errors of different layers add up (first-order: small independent
   perturbations), and choose one k per layer to minimise the summed error subject to a
   flash budget (bytes) or a mean bits/weight. This is a multiple-choice knapsack, solved
   exactly by dynamic programming over the cost rounded up to a grid of ~4000 steps (so the
   solution never exceeds the budget).
3. Check the choice with the joint error (all layers clustered together) against every uniform
   width that fits, and improve it by local search (:func:`refine`).

Flash cost model of one layer (the core report's accounting for the weight data of a
clustered layer): ``ceil(weights * bits / 8)`` packed indices + codebook bytes (one int8 entry
per cluster per codebook: ``channels * k`` per channel, ``k`` per tensor; none at 8 bits, where
the core stores the int8 weights raw) + ``4 * channels``
(int32 bias) + ``5 * channels`` (int32 multiplier + int8 shift per output channel). A layer
whose groups hold at most ``k`` distinct values needs only ``ceil(log2(distinct))`` bits.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..errors import TinyClusterError

DEFAULT_K = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
INT4_K = (2, 3, 4, 6, 8, 12, 16)


def bits_of(k: int) -> int:
    return max(1, math.ceil(math.log2(max(int(k), 2))))


def parse_bytes(value) -> int:
    """'24KiB', '24 KB', '1.5MiB', '20000' -> bytes (KB = 1000, KiB = 1024)."""
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float):
        return int(value)
    s = str(value).strip()
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([kKmM]i?[bB]?|[bB])?", s)
    if not m:
        raise TinyClusterError(f"cannot read flash budget {value!r}; write e.g. 24000, 24KB or 24KiB")
    num = float(m.group(1))
    unit = (m.group(2) or "b").lower()
    mult = {"b": 1, "k": 1000, "kb": 1000, "kib": 1024, "ki": 1024, "m": 10 ** 6, "mb": 10 ** 6,
            "mib": 1 << 20, "mi": 1 << 20}[unit]
    return int(num * mult)


@dataclass
class LayerInfo:
    """What the cost model needs about one weighted layer (kernel seen channels-last)."""

    name: str
    cls: str
    weights: int
    channels: int
    per_channel: bool
    max_distinct: int  # largest number of distinct values in one group (channel or tensor)
    errors: dict = field(default_factory=dict)  # k -> relative output error

    def eff_k(self, k: int) -> int:
        return min(int(k), self.max_distinct)

    def eff_bits(self, k: int) -> int:
        return bits_of(self.eff_k(k))

    def flash_bytes(self, k: int) -> int:
        b = self.eff_bits(k)
        k = self.eff_k(k)
        # 8-bit layers are stored raw by the core (the stream holds the int8 weights, no codebook)
        codebook = 0 if b == 8 else (self.channels if self.per_channel else 1) * k
        codebook = (codebook + 3) // 4 * 4  # the core aligns each codebook array to 4 bytes
        return math.ceil(self.weights * b / 8) + codebook + 4 * self.channels + 5 * self.channels

    def index_bits_total(self, k: int) -> int:
        return self.weights * self.eff_bits(k)


def layer_infos(model, per_channel: bool = True) -> list:
    from ..frontends.keras import kernel_to_channels_last, weighted_layers

    out = []
    for layer, var in weighted_layers(model):
        w = kernel_to_channels_last(layer, var.numpy())
        flat = w.reshape(-1, w.shape[-1])
        if per_channel:
            md = max(np.unique(flat[:, c]).size for c in range(flat.shape[1]))
        else:
            md = np.unique(flat).size
        out.append(LayerInfo(layer.name, layer.__class__.__name__, int(w.size), int(w.shape[-1]),
                             per_channel, int(md)))
    return out


def _rel_err(y, ref) -> float:
    den = float(np.mean(ref.astype(np.float64) ** 2)) or 1.0
    return float(np.mean((y.astype(np.float64) - ref) ** 2)) / den


def measure(model, infos: list, x: np.ndarray, cluster_fn, k_options=DEFAULT_K, *,
            quiet: bool = False, batch_size: int = 64, cache: Optional[dict] = None) -> None:
    """Fill ``info.errors[k]`` for every layer and candidate k (model restored after).

    ``cluster_fn(layer, kernel, k) -> clustered kernel`` (same shape). ``cache`` (a dict) receives
    the clustered kernels under (layer name, k) and the float outputs under "_ref", for
    :func:`refine`."""
    from tqdm.auto import tqdm

    from ..frontends.keras import weighted_layers

    def run():
        return np.concatenate([np.asarray(model(x[i:i + batch_size], training=False))
                               for i in range(0, x.shape[0], batch_size)])

    ref = run()
    if cache is not None:
        cache["_ref"] = ref
    by_name = {layer.name: (layer, var) for layer, var in weighted_layers(model)}
    total = sum(len(k_options) for _ in infos)
    bar = tqdm(total=total, desc="sensitivity", unit="trial", disable=quiet, leave=False)
    for info in infos:
        layer, var = by_name[info.name]
        orig = var.numpy()
        done_lossless = False
        for b in sorted(k_options):
            if done_lossless or b >= info.max_distinct:
                info.errors[b] = 0.0  # every group already has <= k distinct values: exact
                done_lossless = True
                if cache is not None:
                    cache[(info.name, b)] = orig
            else:
                kern = cluster_fn(layer, orig, b)
                var.assign(kern)
                info.errors[b] = _rel_err(run(), ref)
                if cache is not None:
                    cache[(info.name, b)] = kern
            bar.update(1)
        var.assign(orig)
    bar.close()


def floor_bytes(infos, k_options=DEFAULT_K) -> int:
    return sum(min(i.flash_bytes(b) for b in k_options) for i in infos)


def below_floor_message(budget: int, floor: int, min_k: int) -> str:
    return (f"flash budget {budget} B is below the smallest reachable size {floor} B "
            f"({floor / 1024:.1f} KiB, every layer at {min_k} clusters); raise --flash-budget to at least {floor}")


def choose(infos: list, *, flash_budget=None, mean_bits=None, k_options=DEFAULT_K,
           grid: int = 4000, overhead: int = 0) -> dict:
    """Choose k per layer minimising the summed error under the budget.

    ``overhead``: flash bytes of the model outside the per-layer cost model (operator parameter
    structs, non-weighted layers), subtracted from the flash budget.

    Returns {"k": {layer: k}, "flash_bytes": total, "error": summed error, "why": {layer: text}}.
    """
    if (flash_budget is None) == (mean_bits is None):
        raise TinyClusterError("give exactly one of --flash-budget and --mean-bits")
    opts = sorted(k_options)
    if flash_budget is not None:
        budget = parse_bytes(flash_budget) - int(overhead)
        cost = [[i.flash_bytes(b) for b in opts] for i in infos]
        floor = sum(min(c) for c in cost)
        if budget < floor:
            raise TinyClusterError(below_floor_message(parse_bytes(flash_budget), floor + int(overhead), opts[0]))
        unit = "B"
    else:
        mb = float(mean_bits)
        if not 1 <= mb <= 8:
            raise TinyClusterError(f"--mean-bits must be between 1 and 8 (got {mean_bits})")
        total_w = sum(i.weights for i in infos)
        budget = int(math.floor(mb * total_w))
        cost = [[i.index_bits_total(b) for b in opts] for i in infos]
        floor = sum(min(c) for c in cost)
        if budget < floor:
            raise TinyClusterError(f"--mean-bits {mb} is below the smallest reachable {floor / total_w:.3f} bits/weight")
        unit = "bits"
    err = [[i.errors.get(b, np.inf) for b in opts] for i in infos]
    # DP over cost rounded up to the grid (so any DP-feasible choice is truly feasible)
    step = max(1, int(math.ceil(budget / grid)))
    cap = budget // step
    L = len(infos)
    INF = np.inf
    best = np.full(cap + 1, INF)
    best[0] = 0.0
    choice = np.zeros((L, cap + 1), dtype=np.int16)
    for li in range(L):
        new = np.full(cap + 1, INF)
        arg = np.zeros(cap + 1, dtype=np.int16)
        for oi in range(len(opts)):
            c = int(math.ceil(cost[li][oi] / step))
            if c > cap:
                continue
            cand = np.full(cap + 1, INF)
            cand[c:] = best[:cap + 1 - c] + err[li][oi]
            # prefer the cheaper option among equal errors (smaller flash for free)
            better = cand < new - 1e-15
            new = np.where(better, cand, new)
            arg = np.where(better, oi, arg)
        best = new
        choice[li] = arg
    if not np.isfinite(best).any():
        # rounding to the grid made the exact floor infeasible: take the cheapest everywhere
        picks = [int(np.argmin(c)) for c in cost]
    else:
        # smallest error; among ties the smallest cost
        emin = np.min(best[np.isfinite(best)])
        j = int(np.flatnonzero(best <= emin + 1e-15)[0])
        picks = [0] * L
        for li in range(L - 1, -1, -1):
            oi = int(choice[li, j])
            picks[li] = oi
            j -= int(math.ceil(cost[li][oi] / step))
    bits = {infos[li].name: opts[picks[li]] for li in range(L)}  # layer -> k
    total = sum(cost[li][picks[li]] for li in range(L))
    why = {}
    for li, info in enumerate(infos):
        oi = picks[li]
        b = opts[oi]
        parts = [f"error {err[li][oi]:.2e} at k={b}"]
        if oi > 0:
            d_err = err[li][oi - 1] - err[li][oi]
            d_cost = cost[li][oi] - cost[li][oi - 1]
            parts.append(f"k={opts[oi - 1]} would add {d_err:.2e} error to save {d_cost} {unit}")
        if err[li][oi] == 0.0 and info.max_distinct <= b:
            parts.append(f"lossless (<= {info.max_distinct} distinct values per group)")
        why[info.name] = "; ".join(parts)
    flash = sum(i.flash_bytes(bits[i.name]) for i in infos) + (int(overhead) if flash_budget is not None else 0)
    if flash_budget is not None:
        budget, floor = budget + int(overhead), floor + int(overhead)
    cost_table = {infos[li].name: {opts[oi]: cost[li][oi] for oi in range(len(opts))} for li in range(L)}
    return {"k": bits, "cost": total, "cost_unit": unit, "budget": budget, "floor": floor,
            "cost_table": cost_table, "dp_budget": budget - (int(overhead) if flash_budget is not None else 0),
            "overhead": int(overhead) if flash_budget is not None else 0,
            "flash_bytes": flash, "error": float(sum(err[li][picks[li]] for li in range(L))), "why": why}


def uniform_choice(infos: list, k: int) -> dict:
    return {"k": {i.name: k for i in infos},
            "flash_bytes": sum(i.flash_bytes(k) for i in infos),
            "error": float(sum(i.errors.get(k, np.nan) for i in infos))}


def joint_error(model, bits: dict, x: np.ndarray, cache: dict, batch_size: int = 64, halves: bool = False):
    """Relative output error with every layer clustered at once (``bits``: layer -> k; kernels from
    the cache). ``halves=True``: (error, error on even samples, error on odd samples)."""
    from ..frontends.keras import weighted_layers

    saved = []
    for layer, var in weighted_layers(model):
        if layer.name in bits:
            saved.append((var, var.numpy()))
            var.assign(cache[(layer.name, bits[layer.name])])
    try:
        y = np.concatenate([np.asarray(model(x[i:i + batch_size], training=False))
                            for i in range(0, x.shape[0], batch_size)])
    finally:
        for var, w in saved:
            var.assign(w)
    ref = cache["_ref"]
    if halves:
        return _rel_err(y, ref), _rel_err(y[0::2], ref[0::2]), _rel_err(y[1::2], ref[1::2])
    return _rel_err(y, ref)


def refine(model, infos: list, x: np.ndarray, cache: dict, choice: dict, k_options=DEFAULT_K, *,
           rounds: int = 6, top: int = 8, max_evals: int = 150, quiet: bool = True) -> dict:
    """Check the knapsack's choice against the real, joint error and improve it locally.

    The per-layer errors are measured one layer at a time and assumed to add up, which is only
    a first-order model. Here every candidate is evaluated with all layers clustered together:
    the knapsack's choice and every uniform width that fits the budget; then up to ``rounds`` of
    local search from the best: move one layer up a width (paid for by moving another down), or
    move one layer down and spend the freed bytes greedily on the layers with the best error
    reduction per byte (moves ranked by the per-layer table); a move is kept only if the joint
    error falls on both halves of the samples (a guard against fitting the particular calibration
    inputs) and the budget holds. The incumbent is the best uniform width that fits; the
    knapsack's choice replaces it under the same rule. At most ``max_evals`` joint evaluations (deterministic, so
    the result does not depend on the machine's speed).
    Returns the choice with ``k``, ``joint_error`` and the ``candidates`` evaluated.
    """
    from tqdm.auto import tqdm

    opts = sorted(k_options)
    cost = choice["cost_table"]
    budget = choice["dp_budget"]
    names = [i.name for i in infos]
    err = {i.name: i.errors for i in infos}

    def total(b):
        return sum(cost[n][b[n]] for n in names)

    cands = [("knapsack", dict(choice["k"]))]
    for b in opts:
        if b & (b - 1):
            continue  # uniform widths: k = 2**bits
        ub = {n: b for n in names}
        if total(ub) <= budget:
            cands.append((f"uniform {bits_of(b)} bit", ub))
    evaluated = []
    errs = []
    for label, b in cands:
        e = joint_error(model, b, x, cache, halves=True)
        errs.append(e)
        evaluated.append({"assignment": label, "joint_error": e[0], "cost": total(b)})

    def better(e, ref):
        # an improvement must hold on both halves of the samples, not just on their sum: a move
        # that only fits the particular calibration inputs is not taken
        return all(a < r * (1 - 1e-6) for a, r in zip(e, ref))

    # incumbent: the best uniform width that fits; the knapsack's choice must beat it on both halves
    uni = [i for i in range(1, len(cands))]
    if uni:
        bi = min(uni, key=lambda i: errs[i][0])
        best, best_e = dict(cands[bi][1]), errs[bi]
        if better(errs[0], best_e):
            best, best_e = dict(cands[0][1]), errs[0]
    else:
        best, best_e = dict(cands[0][1]), errs[0]
    best_err = best_e[0]
    n_evals = len(evaluated)
    bar = tqdm(range(rounds), desc="joint refinement", disable=quiet, leave=False)
    for _ in bar:
        ups, downs = [], []
        for n in names:
            k = opts.index(best[n])
            if k + 1 < len(opts):
                dc = cost[n][opts[k + 1]] - cost[n][opts[k]]
                gain = err[n][opts[k]] - err[n][opts[k + 1]]
                if gain > 0:
                    ups.append((gain / max(dc, 1), n))
            if k > 0:
                dc = cost[n][opts[k]] - cost[n][opts[k - 1]]
                loss = err[n][opts[k - 1]] - err[n][opts[k]]
                downs.append((loss / max(dc, 1), n))
        ups = [n for _, n in sorted(ups, reverse=True)[:top]]
        downs = [n for _, n in sorted(downs)[:top]]
        moves = []
        for u in ups:  # one layer up, optionally one down to pay for it
            for d in [None] + downs:
                if d == u:
                    continue
                b = dict(best)
                b[u] = opts[opts.index(b[u]) + 1]
                if d is not None:
                    b[d] = opts[opts.index(b[d]) - 1]
                moves.append(b)
        for d in downs:  # one layer down, the freed bytes spent greedily on the best ups
            b = dict(best)
            b[d] = opts[opts.index(b[d]) - 1]
            while True:
                room = budget - total(b)
                bestup = None
                for n in names:
                    k = opts.index(b[n])
                    if n == d or k + 1 >= len(opts):
                        continue
                    dc = cost[n][opts[k + 1]] - cost[n][opts[k]]
                    gain = err[n][opts[k]] - err[n][opts[k + 1]]
                    if dc <= room and gain > 0 and (bestup is None or gain / max(dc, 1) > bestup[0]):
                        bestup = (gain / max(dc, 1), n)
                if bestup is None:
                    break
                b[bestup[1]] = opts[opts.index(b[bestup[1]]) + 1]
            moves.append(b)
        improved = None
        seen = set()
        for b in moves:
            key = tuple(b[n] for n in names)
            if key in seen or total(b) > budget or b == best or n_evals >= max_evals:
                continue
            seen.add(key)
            n_evals += 1
            e = joint_error(model, b, x, cache, halves=True)
            if better(e, best_e) and (improved is None or e[0] < improved[0][0]):
                improved = (e, b)
        if improved is None:
            break
        best_e, best = improved
        best_err = best_e[0]
        evaluated.append({"assignment": "local search", "joint_error": best_err, "cost": total(best)})
    out = dict(choice)
    out["k"] = best
    out["joint_error"] = best_err
    out["candidates"] = evaluated
    return out
