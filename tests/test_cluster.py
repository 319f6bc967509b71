"""Weight clustering: the exact 1-D k-means, codebook bookkeeping, granularities, lossless modes."""
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinycluster.compress.cluster import (
    _cluster_group,
    cluster_graph,
    cluster_tensor,
    clustering_stats,
    kmeans_1d,
    lloyd_1d,
)
from tinycluster.errors import TinyClusterError
from tinycluster.importers.tflite import load_tflite
from tinycluster.ir import QuantParams, Tensor

from conftest import shared_model

MODELS = ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "vww_96_int8.tflite", "ad01_int8.tflite"]


# -- 1-D k-means ------------------------------------------------------------------------------
def _cost(v, w, c, a):
    return float(np.sum(np.asarray(w) * (np.asarray(v) - np.asarray(c)[a]) ** 2))


def _brute_force(v, w, k):
    """Best cost over all contiguous partitions with each run's best integer centroid (scanned)."""
    n = len(v)
    best = math.inf
    for cuts in itertools.combinations(range(1, n), k - 1):
        b = [0, *cuts, n]
        tot = 0.0
        for lo, hi in zip(b[:-1], b[1:]):
            seg, ww = v[lo:hi], w[lo:hi]
            tot += min(float(np.sum(ww * (seg - x) ** 2)) for x in range(int(seg.min()), int(seg.max()) + 1))
        best = min(best, tot)
    return best


histograms = st.integers(2, 9).flatmap(lambda n: st.tuples(
    st.lists(st.integers(-128, 127), min_size=n, max_size=n, unique=True),
    st.lists(st.floats(1e-3, 1e3), min_size=n, max_size=n),
    st.integers(1, n)))


@settings(max_examples=300, deadline=None)
@given(histograms)
def test_kmeans_1d_is_optimal(h):
    vals, wts, k = h
    order = np.argsort(vals)
    v = np.asarray(vals)[order]
    w = np.asarray(wts)[order]
    c, a, cost = kmeans_1d(v, w, k)
    assert cost == pytest.approx(_cost(v, w, c, a), rel=1e-9, abs=1e-9)
    assert cost <= _brute_force(v, w, k) * (1 + 1e-9) + 1e-9


wide_histograms = st.integers(3, 256).flatmap(lambda n: st.tuples(
    st.lists(st.integers(-128, 127), min_size=n, max_size=n, unique=True),
    st.lists(st.integers(1, 5000), min_size=n, max_size=n),
    st.integers(1, 256)))


@settings(max_examples=150, deadline=None)
@given(wide_histograms)
def test_kmeans_1d_never_worse_than_lloyd(h):
    vals, wts, k = h
    order = np.argsort(vals)
    v = np.asarray(vals)[order]
    w = np.asarray(wts, dtype=np.float64)[order]
    c, a, cost = kmeans_1d(v, w, k)
    # well-formed: integer, ascending, distinct centroids; nearest-centroid assignment; <= k clusters
    assert c.dtype.kind == "i" and np.all(np.diff(c) > 0) and c.size == min(k, v.size)
    assert np.all(np.diff(a) >= 0) and a.min() == 0 and a.max() == c.size - 1
    nearest = np.min(np.abs(v[:, None] - c[None, :]), axis=1)
    assert np.array_equal(np.abs(v - c[a]), nearest)
    assert c.min() >= -128 and c.max() <= 127
    if k >= v.size:
        assert cost == 0 and np.array_equal(c, v)
    _, _, base = lloyd_1d(v, w, k)
    assert cost <= base * (1 + 1e-9) + 1e-9
    # one more cluster never hurts
    if 1 < k <= v.size:
        _, _, fewer = kmeans_1d(v, w, k - 1)
        assert cost <= fewer * (1 + 1e-12) + 1e-12


# -- one tensor ------------------------------------------------------------------------------
def _tensor(data, scale, axis=0):
    scale = np.asarray(scale, dtype=np.float32).reshape(-1)
    return Tensor(id=0, name="w", shape=data.shape, dtype="int8",
                  quant=QuantParams(scale=scale, zero_point=np.zeros(scale.size, np.int64), axis=axis), data=data)


@pytest.mark.parametrize("k,bits", [(2, 1), (3, 2), (4, 2), (5, 3), (7, 3), (15, 4), (16, 4), (31, 5), (63, 6),
                                    (127, 7), (255, 8), (256, 8)])
@pytest.mark.parametrize("granularity", ["per-channel", "per-tensor"])
def test_codebook_shape_for_any_k(k, bits, granularity):
    rng = np.random.default_rng(k)
    data = np.clip(np.round(rng.normal(0, 40, size=(6, 3, 3, 8))), -127, 127).astype(np.int8)
    t = _tensor(data, rng.uniform(1e-3, 1e-2, 6))
    cl = cluster_tensor(t, k, granularity, 0)
    assert cl.bits == bits and cl.k == k
    assert cl.codebooks.dtype == np.int8
    assert cl.codebooks.shape == ((6, k) if granularity == "per-channel" else (1, k))
    assert cl.indices.shape == data.shape and cl.indices.min() >= 0 and cl.indices.max() < k
    assert np.all(np.diff(cl.codebooks.astype(int), axis=1) >= 0)  # sorted, padding repeats the last
    vals = cl.values()
    assert vals.dtype == np.int8 and vals.shape == data.shape
    if granularity == "per-channel":
        for c in range(6):
            assert np.unique(vals[c]).size <= k
            if np.unique(data[c]).size <= k:
                assert np.array_equal(vals[c], data[c])  # few enough values: exact
    else:
        assert np.unique(vals).size <= k
        if np.unique(data).size <= k:
            assert np.array_equal(vals, data)
    assert cl.unique_before == np.unique(data).size
    assert cl.unique_after == np.unique(vals).size


def test_depthwise_channel_axis_last():
    rng = np.random.default_rng(3)
    data = rng.integers(-127, 128, size=(1, 3, 3, 5)).astype(np.int8)
    t = _tensor(data, np.full(5, 0.01), axis=3)
    cl = cluster_tensor(t, 2, "per-channel", 3)
    assert cl.channel_axis == 3 and cl.codebooks.shape == (5, 2)
    v = cl.values()
    for c in range(5):
        assert set(np.unique(v[..., c])) <= set(cl.codebooks[c].tolist())


def test_per_tensor_weights_channels_by_scale_squared():
    """One codebook for a per-channel-quantized tensor minimises the real-unit error."""
    rng = np.random.default_rng(5)
    a = rng.integers(-127, 128, size=(1, 200))
    b = rng.integers(-127, 128, size=(1, 200))
    data = np.concatenate([a, b]).astype(np.int8)
    t = _tensor(data, [1.0, 0.01])  # channel 0 matters 10^4 x more
    cl = cluster_tensor(t, 4, "per-tensor", 0)
    weighted = clustering_stats(t, cl, 0)["rms_error"]
    cb, idx = _cluster_group(data.reshape(-1), None, 4)  # unweighted: counts only
    plain = cb[idx].reshape(data.shape)
    err = np.array([[1.0], [0.01]]) * (plain.astype(float) - data)
    assert weighted <= math.sqrt(np.mean(err ** 2)) * (1 + 1e-12)
    # and the weighted codebook is (near) optimal for channel 0 alone
    _, _, c0 = kmeans_1d(*np.unique(a, return_counts=True), 4)
    assert np.sum((cl.values()[0].astype(float) - a[0]) ** 2) == pytest.approx(c0, rel=0.05)


# -- options ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,needle", [
    (dict(bits=0), "--bits"), (dict(bits=9), "--bits"), (dict(clusters=1), "--clusters"),
    (dict(clusters=300), "--clusters"), (dict(bits=4, clusters=16), "only one"), (dict(), "one of"),
    (dict(bits=4, lossless=True), "only one"), (dict(bits=4, granularity="per-row"), "--granularity"),
    (dict(bits=2.5), "--bits"),
])
def test_bad_options(kw, needle):
    g = load_tflite(shared_model("kws_ref_model.tflite"))
    with pytest.raises(TinyClusterError) as e:
        cluster_graph(g, **kw)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert all(t.clustering is None for t in g.tensors)


# -- shared models -----------------------------------------------------------------------------
def _load(model):
    return load_tflite(shared_model(model))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("granularity", ["per-channel", "per-tensor", "auto"])
def test_8_bits_is_lossless(model, granularity):
    g = _load(model)
    recs = cluster_graph(g, bits=8, granularity=granularity)
    assert len(recs) == len({t.id for _, t in g.weight_tensors()})
    for _, t in g.weight_tensors():
        assert t.clustering.bits == 8
        assert np.array_equal(t.clustering.values(), t.data)
    assert all(r["exact"] and r["changed_weights"] == 0 and r["snr_db"] is None for r in recs)


def _effective(t):
    """The int8 values a layer computes with (raw layers: the data itself)."""
    return t.data if t.clustering is None else t.clustering.values()


def _cost_of(g, node, t):
    from tinycluster.compress.cost import weight_cost

    return weight_cost(node, g, t.clustering)


@pytest.mark.parametrize("model", MODELS)
def test_lossless_picks_smallest_exact_footprint(model):
    g = _load(model)
    recs = cluster_graph(g, lossless=True)
    by_tensor = {r["tensor_id"]: r for r in recs}
    for node, t in g.weight_tensors():
        r = by_tensor[t.id]
        assert np.array_equal(_effective(t), t.data)
        cost = _cost_of(g, node, t)
        assert r["footprint_bytes"] == cost.flash == r["index_bytes"] + r["codebook_bytes"] + r["map_bytes"]
        cands = r["candidates"]
        assert cands["raw int8"]["flash_bytes"] == t.size  # RAW8: the int8 weights themselves
        assert r["footprint_bytes"] == min(c["flash_bytes"] for c in cands.values()) <= t.size
        assert all(c["error"] == 0 for c in cands.values())  # every candidate is exact
        axis = r["channel_axis"]
        per_ch = np.moveaxis(t.data, axis, 0).reshape(t.data.shape[axis], -1)
        k_pc = max(2, max(np.unique(row).size for row in per_ch))
        k_pt = max(2, np.unique(t.data).size)
        if r["granularity"] == "per-tensor":
            assert r["k"] == k_pt
        elif r["granularity"] == "per-channel":
            assert r["k"] == k_pc
        elif r["granularity"] == "shared":
            assert math.ceil(math.log2(k_pc)) <= r["bits"] < math.ceil(math.log2(k_pt))
            assert 2 <= r["codebooks"] < r["channels"] and r["map_bytes"] == r["channels"]
        else:
            assert r["granularity"] == "raw int8" and t.clustering is None and r["bits"] == 8


@pytest.mark.parametrize("seed", range(6))
def test_lossless_shared_is_exact(seed):
    from tinycluster.compress.cluster import lossless_shared

    rng = np.random.default_rng(seed)
    n_ch = int(rng.integers(2, 40))
    width = rng.integers(1, 60, size=n_ch)
    data = np.stack([np.clip(np.round(rng.normal(0, w, 50)), -128, 127) for w in width]).astype(np.int8)
    data = np.moveaxis(data.reshape(n_ch, 5, 10), 0, 2)  # channel axis last, like depthwise
    kpc = max(np.unique(data[..., c]).size for c in range(n_ch))
    for bits in range(1, 9):
        res = lossless_shared(data, 2, bits)
        if kpc > (1 << bits):
            assert res is None
            continue
        cbs, cmap, idx = res
        assert cbs.shape[1] <= (1 << bits) and idx.max() < cbs.shape[1] and idx.shape == data.shape
        for c in range(n_ch):
            assert np.array_equal(cbs[cmap[c]][idx[..., c]], data[..., c])
        assert np.array_equal(lossless_shared(data, 2, bits)[2], idx)  # deterministic


def test_lossless_shared_pays_off_on_ad01():
    g = _load("ad01_int8.tflite")
    recs = cluster_graph(g, lossless=True)
    shared = [r for r in recs if r["granularity"] == "shared"]
    assert shared
    for _, t in g.weight_tensors():
        assert np.array_equal(t.clustering.values(), t.data)


def test_kws_lossless_at_64_clusters_per_channel():
    g = _load("kws_ref_model.tflite")
    recs = cluster_graph(g, clusters=64, granularity="per-channel")
    for r in recs:
        assert r["exact"]
        # 6-bit per-channel codebooks, or raw int8 where they would not be smaller (64 codebooks of 64
        # entries outweigh what 6-bit indices save on kws's small layers)
        assert (r["bits"], r["k"]) == (6, 64) or r["granularity"] == "raw int8"
        assert r["footprint_bytes"] <= r["weights"]
    for _, t in g.weight_tensors():
        assert np.array_equal(_effective(t), t.data)


@pytest.mark.parametrize("model", ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite"])
def test_deterministic(model):
    a, b = _load(model), _load(model)
    ra = cluster_graph(a, bits=3, granularity="auto")
    rb = cluster_graph(b, bits=3, granularity="auto")
    assert ra == rb
    for (_, ta), (_, tb) in zip(a.weight_tensors(), b.weight_tensors()):
        assert np.array_equal(_effective(ta), _effective(tb))
        assert np.array_equal(ta.quant.scale, tb.quant.scale)
        if ta.clustering is not None:
            assert np.array_equal(ta.clustering.indices, tb.clustering.indices)
            assert np.array_equal(ta.clustering.codebooks, tb.clustering.codebooks)


@pytest.mark.parametrize("model,bits", [("kws_ref_model.tflite", 2), ("kws_ref_model.tflite", 4),
                                        ("pretrainedResnet_quant.tflite", 3), ("ad01_int8.tflite", 4)])
def test_bookkeeping_and_granularities(model, bits):
    from tinycluster.packing import packed_size

    g = _load(model)
    pc = {r["tensor_id"]: r for r in cluster_graph(g, bits=bits, granularity="per-channel")}
    pt = {r["tensor_id"]: r for r in cluster_graph(_load(model), bits=bits, granularity="per-tensor")}
    ga = _load(model)
    auto = {r["tensor_id"]: r for r in cluster_graph(ga, bits=bits, granularity="auto")}
    k = 1 << bits
    for node, t in g.weight_tensors():
        p, q, a = pc[t.id], pt[t.id], auto[t.id]
        assert p["unique_before"] == q["unique_before"] == np.unique(t.data).size
        for r in (p, q):
            if r["granularity"] == "raw int8":  # never larger than the int8 weights
                assert r["index_bytes"] == t.size and r["codebook_bytes"] == 0
                continue
            assert r["index_bytes"] == packed_size(t.size, bits)
        if p["granularity"] == "per-channel":
            assert p["codebook_bytes"] == p["channels"] * k and p["max_unique_per_channel_after"] <= k
            assert p["footprint_bytes"] <= t.size
        if q["granularity"] == "per-tensor":
            assert q["codebook_bytes"] == k and q["unique_after"] <= k
            # per-channel codebooks can always reproduce the per-tensor one: never more error
            if p["granularity"] == "per-channel":
                assert p["rms_error"] <= q["rms_error"] * (1 + 1e-9) + 1e-15
        # auto: the documented rule (choose_auto): the choice is one of the candidates, never above
        # raw int8, and no candidate is both cheaper (or as cheap) in flash and in SRAM codebooks
        # and more accurate (a cheaper-in-flash candidate may be left for SRAM: per-channel codebooks)
        cands = a["candidates"]
        assert {"normalized", "per-tensor", "per-channel", "raw int8"} <= set(cands)
        assert a["footprint_bytes"] <= t.size == cands["raw int8"]["flash_bytes"]
        chosen_err = min(c["error"] for c in cands.values() if c["flash_bytes"] == a["footprint_bytes"])
        for name, c in cands.items():
            assert not (c["flash_bytes"] <= a["footprint_bytes"] and c["codebook_bytes"] <= a["codebook_bytes"]
                        and c["error"] < chosen_err - 1e-12), (name, a)
    info = ga.meta["clustering"]["auto"]
    assert 0 <= info["extra_bytes_spent"] <= info["extra_bytes_allowed"]
    base = sum(min(c["flash_bytes"] for c in r["candidates"].values()) for r in auto.values())
    assert sum(r["footprint_bytes"] for r in auto.values()) <= base + info["extra_bytes_allowed"]


@pytest.mark.parametrize("groups", [1, 2, 3, 5, 8])
def test_shared_codebooks_between_per_tensor_and_per_channel(groups):
    rng = np.random.default_rng(groups)
    n_ch = 12
    spread = rng.uniform(5, 60, size=(n_ch, 1))
    data = np.clip(np.round(rng.normal(0, 1, size=(n_ch, 40)) * spread), -127, 127).astype(np.int8)
    t = _tensor(data, rng.uniform(1e-3, 1e-2, n_ch))
    k = 4
    sh = cluster_tensor(t, k, "shared", 0, groups=groups)
    pc = cluster_tensor(t, k, "per-channel", 0)
    pt = cluster_tensor(t, k, "per-tensor", 0)
    e = {n: clustering_stats(t, c, 0)["rms_error"] for n, c in (("sh", sh), ("pc", pc), ("pt", pt))}
    assert e["pc"] <= e["sh"] * (1 + 1e-9) and e["sh"] <= e["pt"] * (1 + 1e-9)
    assert sh.granularity == "shared" and sh.channel_axis == 0
    assert sh.codebooks.shape[1] == k and sh.codebooks.shape[0] <= groups
    cmap = np.asarray(sh.codebook_of_channel)
    assert cmap.shape == (n_ch,) and set(cmap.tolist()) == set(range(sh.codebooks.shape[0]))
    v = sh.values()
    for c in range(n_ch):
        assert set(np.unique(v[c]).tolist()) <= set(sh.codebooks[cmap[c]].tolist())
    again = cluster_tensor(t, k, "shared", 0, groups=groups)
    assert np.array_equal(again.indices, sh.indices) and np.array_equal(again.codebooks, sh.codebooks)


def test_more_bits_never_more_error():
    g = _load("kws_ref_model.tflite")
    prev = None
    for bits in range(1, 9):
        recs = cluster_graph(g, bits=bits, granularity="per-channel")
        errs = [r["rms_error"] for r in recs]
        if prev is not None:
            assert all(e <= p * (1 + 1e-12) + 1e-15 for e, p in zip(errs, prev))
        prev = errs
    assert all(e == 0 for e in prev)


NEVER_LARGER_MODES = [dict(bits=4, granularity="per-channel"), dict(bits=4, granularity="per-tensor"),
                      dict(bits=4, granularity="normalized"), dict(bits=4, granularity="auto"),
                      dict(lossless=True, granularity="auto"), dict(lossless=True, granularity="per-channel")]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "vww_96_int8.tflite",
                                   "ad01_int8.tflite"])
def test_no_layer_larger_than_int8_in_any_mode(model):
    """Every shared model in every mode: each layer's flash as stored (indices + codebooks + map +
    requantization entries its layout adds, recomputed with cost.weight_cost from the applied
    clustering) is at most its int8 weight bytes; --lossless keeps every weight exact."""
    from tinycluster.compress.cost import weight_cost
    from tinycluster.ops import get_handler

    for mode in NEVER_LARGER_MODES:
        g = _load(model)
        recs = cluster_graph(g, **mode)
        seen = set()
        for node, t in g.weight_tensors():
            if t.id in seen:
                continue
            seen.add(t.id)
            assert get_handler(node.op).weight_input is not None
            c = weight_cost(node, g, t.clustering)
            assert c.flash <= t.size, (model, mode, node.name, c)
            if mode.get("lossless"):
                assert np.array_equal(_effective(t), t.data), (model, mode, node.name)
        assert sum(r["footprint_bytes"] for r in recs) <= sum(r["weights"] for r in recs)
