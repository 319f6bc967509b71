"""Output-aware refit onto the int8 grid (tinycluster.compress.output_aware): numpy only, fast;
plus one converter check that TFLite keeps the chosen integers through batch-norm folding."""
import numpy as np
import pytest

from tinycluster.compress.kmeans_float import cluster_array
from tinycluster.compress.output_aware import QMAX, output_error, reassign, refit_int8


def _problem(seed, d=27, C=8, n=4000, dc=100.0, k=8, zeros=False):
    """Weights [d, C], their per-channel k-means values and H = E[x x^T] of inputs with a large
    shared mean (raw pixels, post-ReLU activations)."""
    rng = np.random.default_rng(seed)
    x = dc + 30.0 * rng.standard_normal((n, d))
    H = x.T @ x / n
    w = rng.standard_normal((d, C)) * rng.uniform(0.2, 2.0, C)
    if zeros:
        w[rng.random((d, C)) < 0.3] = 0.0
    v = cluster_array(w, k, per_channel=True).values().astype(np.float64)
    return w, v, H


def _naive(v):
    """What the converter does with clustered float weights: round(v / s), s = max|v| / 127."""
    s = np.abs(v).max(axis=0) / QMAX
    return np.round(v / s) * s


def _on_grid(v):
    s = np.abs(v).max(axis=0) / QMAX
    q = v / s
    return np.allclose(q, np.round(q), atol=1e-6) and np.abs(np.round(q)).max() <= QMAX


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k, bound", [(2, 1.0), (4, 1.0), (16, 0.9), (64, 0.5)])
def test_refit_cuts_output_error_of_dc_heavy_inputs(seed, k, bound):
    """Never worse than the converter's rounding of the same clusters; at larger k, where rounding
    is a large part of the error, much better (the inputs' mean makes correlated rounding errors
    add up, and the refit cancels them)."""
    w, v, H = _problem(seed, k=k)
    r = refit_int8(w, v, H)
    naive = output_error(w, _naive(v), H)
    assert output_error(w, r, H) <= bound * naive * (1 + 1e-9)
    for c in range(w.shape[1]):
        assert np.unique(r[:, c]).size <= np.unique(v[:, c]).size
    assert _on_grid(r)


@pytest.mark.parametrize("seed", range(4))
def test_refit_unclustered_is_better_int8_rounding(seed):
    """k >= distinct values (every weight its own value): the refit is output-aware int8 rounding."""
    w, _, H = _problem(seed, d=64, C=4)
    r = refit_int8(w, w, H)
    assert _on_grid(r)
    assert output_error(w, r, H) < output_error(w, _naive(w), H)


def test_refit_keeps_pruned_zeros_and_per_channel_h():
    w, v, H = _problem(3, zeros=True)
    Hc = np.stack([H * (1 + 0.1 * c) for c in range(w.shape[1])])  # depthwise: one H per channel
    for HH in (H, Hc):
        r = refit_int8(w, v, HH)
        np.testing.assert_array_equal(r[w == 0.0], 0.0)


def test_snap_only_keeps_centroids_near_where_they_were():
    w, v, H = _problem(4, k=16)
    r = refit_int8(w, v, H, snap_only=True)
    s = np.abs(r).max(axis=0) / QMAX
    # every value moves by a few grid steps at most (snap + coordinate descent), never refitted
    assert (np.abs(r - v) <= 4 * s[None, :] + 1e-12).all()
    assert output_error(w, r, H) <= output_error(w, _naive(v), H) + 1e-9


@pytest.mark.parametrize("seed", range(4))
def test_reassign_never_raises_error_and_keeps_levels(seed):
    w, v, H = _problem(seed, k=4, zeros=seed % 2 == 1)
    r = reassign(w, v, H)
    assert output_error(w, r, H) <= output_error(w, v, H) + 1e-9
    for c in range(w.shape[1]):
        assert set(np.unique(r[:, c])) <= set(np.unique(v[:, c]))
        assert np.abs(r[:, c]).max() == np.abs(v[:, c]).max()  # the scale-setting value stays
    np.testing.assert_array_equal(r[v == 0.0], 0.0)


def test_converter_keeps_the_chosen_integers_through_batchnorm_folding():
    """The refit picks integers for the grid max|w_c| / 127; TFLite folds batch norm (a factor per
    channel) and quantizes per channel: the int8 weights must be exactly those integers."""
    pytest.importorskip("tensorflow")
    from tinycluster.frontends.keras import convert_to_int8, keras, layer_input_moments, tf
    from tinycluster.frontends.pipeline import _refit, cluster_kernel

    tf().random.set_seed(0)
    L = keras().layers
    inp = L.Input((8, 8, 3))
    h = L.Conv2D(6, 3, padding="same", use_bias=False)(inp)
    h = L.BatchNormalization()(h)
    h = L.ReLU()(h)
    out = L.Dense(4)(L.Flatten()(h))
    m = keras().Model(inp, out)
    rng = np.random.default_rng(0)
    bn = m.layers[2]
    bn.set_weights([rng.uniform(0.5, 2, 6), rng.normal(0, 0.1, 6), rng.normal(0, 1, 6), rng.uniform(0.2, 3, 6)])
    x = rng.uniform(0, 255, (32, 8, 8, 3)).astype(np.float32)
    conv = m.layers[1]
    w = conv.kernel.numpy()
    H = layer_input_moments(m, x)[conv.name]
    new, _ = _refit(conv, w, cluster_kernel(conv, w, 8)[0], H)
    conv.kernel.assign(new)
    flat = new.reshape(-1, 6).astype(np.float64)
    want = np.round(flat / (np.abs(flat).max(axis=0) / QMAX)).astype(np.int64)
    import tflite

    mdl = tflite.Model.GetRootAsModel(bytearray(convert_to_int8(m, x)), 0)
    sg = mdl.Subgraphs(0)
    got = None
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        t = sg.Tensors(int(op.InputsAsNumpy()[1]))
        if len(t.ShapeAsNumpy()) == 4:
            wq = mdl.Buffers(t.Buffer()).DataAsNumpy().view(np.int8).reshape(tuple(t.ShapeAsNumpy()))
            got = np.moveaxis(wq, 0, -1).reshape(-1, 6).astype(np.int64)  # OHWI -> [h*w*i, O]
    assert got is not None
    sign = np.sign(bn.get_weights()[0])  # a negative gamma flips the channel
    np.testing.assert_array_equal(got, want * sign[None, :].astype(np.int64))
