"""Keras front end on small models built here (a few layers, trained for a few epochs on the
scikit-learn digits): clustering, pruning, healing, budgets, INT4, bad inputs."""
import numpy as np
import pytest

from tinycluster.errors import TinyClusterError

tf_mod = pytest.importorskip("tensorflow")  # the front end needs TF (tinycluster[tf])

from tinycluster.frontends.keras import keras, load_keras, tf  # noqa: E402
from tinycluster.frontends.pipeline import compress_to_int8_tflite  # noqa: E402


def _digits(n=600):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    return x[:n], d.target[:n].astype(np.int64)


def _build(seed=0):
    k = keras()
    tf().random.set_seed(seed)
    L = k.layers
    inp = L.Input((8, 8, 1))
    h = L.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    h = L.BatchNormalization()(h)
    h = L.ReLU()(h)
    h = L.DepthwiseConv2D(3, padding="same", activation="relu")(h)
    h = L.Conv2D(16, 1, activation="relu")(h)
    h = L.MaxPooling2D(2)(h)
    h = L.Flatten()(h)
    out = L.Dense(10)(h)
    return k.Model(inp, out)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("small")
    x, y = _digits()
    m = _build()
    k = keras()
    m.compile(optimizer=k.optimizers.Adam(1e-2), loss=k.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(x, y, epochs=4, batch_size=32, verbose=0)
    path = d / "small.keras"
    m.save(path)
    np.save(d / "calib.npy", x[:64])
    np.savez(d / "train.npz", x=x, y=y)
    return {"dir": d, "model": str(path), "calib": str(d / "calib.npy"), "train": str(d / "train.npz"),
            "x": x, "y": y}


def _weight_channels(tfl: bytes):
    """(op name, [per-channel int8 arrays]) of every weighted op of a .tflite."""
    import tflite

    m = tflite.Model.GetRootAsModel(bytearray(tfl), 0)
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    sg = m.Subgraphs(0)
    out = []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        c = m.OperatorCodes(op.OpcodeIndex())
        name = names[max(c.BuiltinCode(), c.DeprecatedBuiltinCode())]
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        t = sg.Tensors(int(op.InputsAsNumpy()[1]))
        w = m.Buffers(t.Buffer()).DataAsNumpy().view(np.int8).reshape(tuple(t.ShapeAsNumpy()))
        axis = t.Quantization().QuantizedDimension()
        out.append((name, [np.take(w, j, axis=axis) for j in range(w.shape[axis])]))
    return out


@pytest.mark.parametrize("bits", [2, 4])
def test_bits_give_at_most_k_int8_values_per_channel(small, bits):
    tfl, info = compress_to_int8_tflite(small["model"], calib=small["calib"], bits=bits, quiet=True,
                                        artifacts=False)
    ops = _weight_channels(tfl)
    assert len(ops) == 4
    for name, chans in ops:
        assert max(np.unique(c).size for c in chans) <= 2 ** bits, name
    assert all(layer["bits"] <= bits for layer in info["layers"])
    assert info["per_layer_bits"]


def test_pruning_sparsity_survives_clustering_and_quantization(small):
    tfl, info = compress_to_int8_tflite(small["model"], calib=small["calib"], bits=2, prune=0.6, quiet=True,
                                        artifacts=False)
    for name, chans in _weight_channels(tfl):
        w = np.concatenate([c.ravel() for c in chans])
        assert (w == 0).mean() >= 0.6 - 0.02, name  # pruned zeros stay zero (a zero centroid)
        assert max(np.unique(c).size for c in chans) <= 4
    assert all(v >= 0.59 for v in info["prune"]["sparsity"].values())


def test_structured_pruning_zeroes_whole_channels(small):
    tfl, _ = compress_to_int8_tflite(small["model"], calib=small["calib"], bits=4, prune=0.5,
                                     prune_structured=True, quiet=True, artifacts=False)
    ops = _weight_channels(tfl)
    for name, chans in ops[:-1]:
        dead = sum(1 for c in chans if not c.any())
        assert dead >= len(chans) // 2 - 1, name
    # the output layer keeps every output (class) alive: pruned unstructured instead
    name, chans = ops[-1]
    assert all(c.any() for c in chans)
    w = np.concatenate([c.ravel() for c in chans])
    assert (w == 0).mean() >= 0.45


def test_healing_reduces_loss(small):
    tfl, info = compress_to_int8_tflite(small["model"], calib=small["calib"], bits=1, heal=small["train"],
                                        heal_epochs=2, quiet=True, artifacts=False)
    h = info["heal"]
    assert h["loss_after"] < h["loss_before"]
    for name, chans in _weight_channels(tfl):  # assignments fixed: still <= 2 values per channel
        assert max(np.unique(c).size for c in chans) <= 2


def test_flash_budget_respected(small):
    tfl, info = compress_to_int8_tflite(small["model"], calib=small["calib"], bits=4, flash_budget=2500,
                                        quiet=True, artifacts=False)
    assert info["flash_bytes_estimate"] <= 2500
    assert set(info["sensitivity"]["why"]) == {layer["name"] for layer in info["layers"]}
    table = info["sensitivity"]["table"]
    assert all(len(v) == 15 for v in table.values())  # k = 2, 3, 4, 6, 8, ..., 192, 256


def test_flash_budget_below_floor(small):
    with pytest.raises(TinyClusterError, match=r"below the smallest reachable size \d+ B"):
        compress_to_int8_tflite(small["model"], calib=small["calib"], flash_budget=100, quiet=True,
                                artifacts=False)


def test_int4_codebook_values(small):
    tfl, info = compress_to_int8_tflite(small["model"], calib=small["calib"], bits=3, weight_dtype="int4",
                                        quiet=True, artifacts=False)
    for name, chans in _weight_channels(tfl):
        w = np.concatenate([c.ravel() for c in chans])
        assert w.min() >= -8 and w.max() <= 7, name
        assert max(np.unique(c).size for c in chans) <= 8


def test_int4_model_close_to_float(small):
    """The int4 rewrite keeps the model's function (bias rescaled with the weights)."""
    from tinycluster.evaluate import TFLiteRunner

    x = small["x"][:100]
    tfl4, info = compress_to_int8_tflite(small["model"], calib=small["calib"], bits=4, weight_dtype="int4",
                                         quiet=True)
    y4 = TFLiteRunner(tfl4, "litert-ref").run(x)
    yf = TFLiteRunner(info.artifacts["float.tflite"]).run(x)
    assert np.mean(np.argmax(y4, 1) == np.argmax(yf, 1)) >= 0.9


def test_unsupported_layer_lstm(tmp_path):
    k = keras()
    inp = k.layers.Input((5, 3))
    h = k.layers.LSTM(4, name="my_lstm")(inp)
    m = k.Model(inp, k.layers.Dense(2)(h))
    p = tmp_path / "lstm.h5"
    m.save(p)
    with pytest.raises(TinyClusterError) as e:
        load_keras(p)
    msg = str(e.value)
    assert "my_lstm" in msg and "LSTM" in msg and "Conv2D" in msg and "\n" not in msg


def test_wrong_calibration_shape(small, tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((10, 8, 8, 3), np.float32))
    with pytest.raises(TinyClusterError) as e:
        compress_to_int8_tflite(small["model"], calib=str(bad), bits=4, quiet=True)
    msg = str(e.value)
    assert "(10, 8, 8, 3)" in msg and "(N, 8, 8, 1)" in msg and "\n" not in msg


def test_missing_and_corrupt_files(small, tmp_path):
    with pytest.raises(TinyClusterError, match="no such file"):
        compress_to_int8_tflite(tmp_path / "nope.h5", calib=small["calib"], bits=4)
    bad = tmp_path / "broken.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(TinyClusterError, match="cannot load the Keras model"):
        load_keras(bad)
    with pytest.raises(TinyClusterError, match="calibration"):
        compress_to_int8_tflite(small["model"], bits=4)  # neither --calib nor --calib-random


def test_calib_random_warns(small, capsys):
    compress_to_int8_tflite(small["model"], calib_random=8, bits=8, quiet=True, artifacts=False)
    assert "warning" in capsys.readouterr().err


def test_bad_options(small):
    for kw in (dict(bits=9), dict(clusters=300), dict(method="magic"), dict(weight_dtype="int2"),
               dict(prune=1.5), dict(flash_budget=1000, mean_bits=2)):
        with pytest.raises(TinyClusterError):
            compress_to_int8_tflite(small["model"], calib=small["calib"], quiet=True, artifacts=False,
                                    **{"bits": 4, **kw} if "bits" not in kw and "clusters" not in kw else kw)
