"""Float clustering, the sensitivity chooser and the cost model: numpy only, fast."""
import numpy as np
import pytest

from tinycluster.compress.kmeans_float import affine_correct, cluster_array, kmeans_1d
from tinycluster.compress.sensitivity import DEFAULT_K, LayerInfo, choose, floor_bytes, parse_bytes
from tinycluster.errors import TinyClusterError


@pytest.mark.parametrize("init", ["kmeans++", "linear", "density"])
def test_kmeans_1d_recovers_separated_clusters(init):
    rng = np.random.default_rng(0)
    centers = np.array([-3.0, -1.0, 0.5, 2.0])
    x = np.concatenate([c + 0.01 * rng.standard_normal(200) for c in centers])
    cents, idx = kmeans_1d(x, 4, init=init, rng=rng)
    assert cents.size == 4
    np.testing.assert_allclose(np.sort(cents), centers, atol=0.01)
    assert np.abs(cents[idx] - x).max() < 0.1


def test_kmeans_exact_when_few_distinct_values():
    x = np.array([0.5, -0.25, 0.5, 1.0, -0.25])
    cents, idx = kmeans_1d(x, 8)
    np.testing.assert_array_equal(cents[idx], x)


def test_kmeans_beats_uniform_grid_on_gaussian_weights():
    w = np.random.default_rng(1).standard_normal((3, 3, 16, 32)).astype(np.float32)
    km = cluster_array(w, 16, method="kmeans")
    un = cluster_array(w, 16, method="uniform")
    e_km = np.mean((km.values() - w) ** 2)
    e_un = np.mean((un.values() - w) ** 2)
    assert e_km < e_un


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("k", [2, 4, 16])
def test_cluster_array_k_distinct_and_zeros_kept(per_channel, k):
    rng = np.random.default_rng(k)
    w = rng.standard_normal((3, 3, 4, 8)).astype(np.float32)
    w[np.abs(w) < 0.6] = 0.0  # ~45 % exact zeros, as after pruning
    fc = cluster_array(w, k, per_channel=per_channel)
    v = fc.values()
    assert v.shape == w.shape
    np.testing.assert_array_equal(v == 0, w == 0)  # sparsity preserved exactly, no new zeros
    groups = [v[..., c] for c in range(v.shape[-1])] if per_channel else [v]
    for g in groups:
        assert np.unique(g).size <= k


def test_int4_grid_centroids():
    w = np.random.default_rng(2).standard_normal((64, 10)).astype(np.float32)
    fc = cluster_array(w, 8, int4_grid=True)
    v = fc.values()
    for c in range(10):
        col = v[:, c]
        assert np.unique(col).size <= 8
        # some grid step s = max|v| / m (m <= 8) puts every value on an integer in [-8, 7]
        amax = np.abs(col).max()
        fits = [m for m in range(1, 9)
                if np.allclose(col * m / amax, np.round(col * m / amax), atol=1e-4)
                and (np.round(col * m / amax)).min() >= -8 and (np.round(col * m / amax)).max() <= 7]
        assert fits, col


def test_affine_correction_preserves_mean_and_std():
    w = np.random.default_rng(3).standard_normal((200, 4)).astype(np.float32)
    fc = affine_correct(w, cluster_array(w, 4))
    v = fc.values()
    np.testing.assert_allclose(v.std(axis=0), w.std(axis=0), rtol=1e-4)
    np.testing.assert_allclose(v.mean(axis=0), w.mean(axis=0), atol=1e-5)
    assert max(np.unique(v[:, c]).size for c in range(4)) <= 4


def _infos():
    rng = np.random.default_rng(4)
    infos = []
    for i, (n, c) in enumerate([(1000, 10), (5000, 20), (300, 30), (8000, 8)]):
        li = LayerInfo(f"l{i}", "Conv2D", n, c, True, max_distinct=n // c)
        base = rng.uniform(0.2, 3.0)
        li.errors = {k: base * float(k) ** -2 for k in DEFAULT_K}
        infos.append(li)
    return infos


def test_cost_model():
    li = LayerInfo("x", "Conv2D", 1000, 10, True, max_distinct=100)
    assert li.flash_bytes(16) == 500 + 10 * 16 + 4 * 10 + 5 * 10
    assert li.flash_bytes(12) == 500 + 10 * 12 + 4 * 10 + 5 * 10  # same 4-bit index, smaller codebook
    assert LayerInfo("y", "Dense", 64, 10, True, 64).flash_bytes(3) == 16 + 32 + 90  # 30-byte codebook padded to 32
    # a layer whose channels hold at most 9 values needs only 4 bits, whatever k is asked for
    dw = LayerInfo("dw", "DepthwiseConv2D", 90, 10, True, max_distinct=9)
    assert dw.eff_bits(256) == 4 and dw.flash_bytes(256) == dw.flash_bytes(16)
    # 8-bit layers carry no codebook (the core stores their int8 weights raw)
    big = LayerInfo("fc", "Dense", 1000, 4, True, max_distinct=250)
    assert big.flash_bytes(256) == 1000 + 9 * 4


@pytest.mark.parametrize("frac", [0.3, 0.5, 0.8])
def test_choice_respects_budget_and_beats_uniform(frac):
    infos = _infos()
    lo = floor_bytes(infos)
    hi = sum(i.flash_bytes(256) for i in infos)
    budget = int(lo + frac * (hi - lo))
    ch = choose(infos, flash_budget=budget)
    assert ch["flash_bytes"] <= budget
    # any uniform width that fits is no better than the chosen assignment
    for b in range(1, 9):
        if sum(i.flash_bytes(2 ** b) for i in infos) <= budget:
            assert ch["error"] <= sum(i.errors[2 ** b] for i in infos) + 1e-12
    assert set(ch["why"]) == {i.name for i in infos}


def test_budget_below_floor_names_smallest_size():
    infos = _infos()
    lo = floor_bytes(infos)
    with pytest.raises(TinyClusterError, match=f"smallest reachable size {lo} B"):
        choose(infos, flash_budget=lo - 1)


def test_mean_bits():
    infos = _infos()
    ch = choose(infos, mean_bits=3.0)
    tw = sum(i.weights for i in infos)
    assert sum(i.weights * i.eff_bits(ch["k"][i.name]) for i in infos) <= 3.0 * tw


@pytest.mark.parametrize("s,v", [("24KiB", 24576), ("24KB", 24000), ("1000", 1000), (" 1.5 MiB", 1572864), (512, 512)])
def test_parse_bytes(s, v):
    assert parse_bytes(s) == v


def test_parse_bytes_bad():
    with pytest.raises(TinyClusterError):
        parse_bytes("lots")
