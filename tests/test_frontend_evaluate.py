"""Keras model -> compile (core) -> verify bit-exact -> evaluate; float .tflite input; CLI errors."""
import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from tinycluster.errors import TinyClusterError  # noqa: E402
from tinycluster.frontends.keras import convert_to_float, keras, tf  # noqa: E402


def _digits(n=500):
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32)[:n, ..., None], d.target[:n].astype(np.int64)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("ev")
    x, y = _digits()
    k = keras()
    tf().random.set_seed(1)
    L = k.layers
    inp = L.Input((8, 8, 1))
    h = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    h = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6")(h)
    h = L.AveragePooling2D(2)(h)
    h = L.Reshape((32,))(h)
    out = L.Dense(10, activation="softmax")(h)
    m = k.Model(inp, out)
    m.compile(optimizer=k.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    m.fit(x, y, epochs=12, batch_size=32, verbose=0)
    m.save(d / "m.h5")
    np.save(d / "calib.npy", x[:100])
    np.savez(d / "test.npz", x=x[300:], y=y[300:])
    (d / "m_float.tflite").write_bytes(convert_to_float(m))
    return d, m, x, y


def test_keras_compile_verify_evaluate(trained, tmp_path):
    import tinycluster
    from tinycluster.evaluate import evaluate
    from tinycluster.frontends.pipeline import save_artifacts
    from tinycluster.verify import verify

    d, m, x, y = trained
    cm = tinycluster.compile(d / "m.h5", bits=3, granularity="per-channel",
                             frontend={"calib": str(d / "calib.npy")}, quiet=True)
    out = cm.write(tmp_path / "out")
    save_artifacts(out, cm.report["frontend"])
    assert verify(out, samples=20, seed=5)["mismatches"] == 0
    res = evaluate(out, d / "test.npz", quiet=True)
    for key in ("float_acc", "int8_acc", "clustered_acc", "top1_agreement_vs_int8", "snr_db_vs_int8"):
        assert res[key] is not None, key
    assert res["float_acc"] > 0.7 and res["clustered_acc"] > 0.5
    assert 0.0 <= res["top1_agreement_vs_int8"] <= 1.0
    rep = json.loads((out / "report.json").read_text())
    assert rep["evaluation"]["clustered_acc"] == res["clustered_acc"]
    assert "## Evaluation" in (out / "report.md").read_text()
    for png in ("weights_hist.png", "bytes_per_layer.png"):
        assert (out / png).stat().st_size > 1000
    # evaluating twice replaces the section instead of appending a second one
    evaluate(out, d / "test.npz", quiet=True, plots=False)
    assert (out / "report.md").read_text().count("## Evaluation") == 1


def test_float_tflite_rebuilt_exactly(trained):
    from tinycluster.evaluate import TFLiteRunner
    from tinycluster.frontends.tflite_float import tflite_to_keras

    d, m, x, _ = trained
    rebuilt = tflite_to_keras(d / "m_float.tflite")
    np.testing.assert_allclose(rebuilt.predict(x[:50], verbose=0), m.predict(x[:50], verbose=0), atol=1e-5)
    y_t = TFLiteRunner((d / "m_float.tflite").read_bytes()).run(x[:50])
    np.testing.assert_allclose(rebuilt.predict(x[:50], verbose=0), y_t, atol=1e-5)


def test_float_tflite_compiles_bit_exact(trained, tmp_path):
    import tinycluster
    from tinycluster.verify import verify

    d, *_ = trained
    cm = tinycluster.compile(d / "m_float.tflite", bits=4, frontend={"calib": str(d / "calib.npy")}, quiet=True)
    assert all(layer["bits"] <= 4 for layer in cm.report["frontend"]["layers"])
    assert verify(cm.write(tmp_path / "f"), samples=10)["mismatches"] == 0


def test_cli_unsupported_layer_one_line_error(tmp_path):
    k = keras()
    inp = k.layers.Input((6, 4))
    m = k.Model(inp, k.layers.Dense(3)(k.layers.LSTM(5, name="rnn")(inp)))
    m.save(tmp_path / "lstm.h5")
    out = tmp_path / "o"
    r = subprocess.run([sys.executable, "-m", "tinycluster.cli", "compile", str(tmp_path / "lstm.h5"),
                        "--calib-random", "4", "-o", str(out)], capture_output=True, text=True)
    assert r.returncode != 0
    err = [ln for ln in r.stderr.strip().splitlines() if "rnn" in ln]
    assert err and "LSTM" in err[0] and "Traceback" not in r.stderr
    assert not out.exists()


def test_cli_wrong_calibration_shape(trained, tmp_path):
    d, *_ = trained
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 8, 8), np.float32))
    out = tmp_path / "o"
    r = subprocess.run([sys.executable, "-m", "tinycluster.cli", "compile", str(d / "m.h5"), "--calib", str(bad),
                        "-o", str(out)], capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "(4, 8, 8)" in r.stderr and "(N, 8, 8, 1)" in r.stderr
    assert not out.exists()


def test_evaluate_bad_data(trained, tmp_path):
    import tinycluster
    from tinycluster.evaluate import evaluate

    d, *_ = trained
    cm = tinycluster.compile(d / "m.h5", bits=4, frontend={"calib": str(d / "calib.npy")}, quiet=True)
    out = cm.write(tmp_path / "o")
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((3, 5), np.float32), y=np.zeros(3, np.int64))
    with pytest.raises(TinyClusterError, match="shape"):
        evaluate(out, bad, quiet=True)


def test_evaluate_rebuilds_references_when_not_saved(trained, tmp_path):
    """An output folder written without the front end's artifacts still gets float and int8
    accuracy: the references are rebuilt from the source model named in report.json."""
    import tinycluster
    from tinycluster.evaluate import evaluate

    d, *_ = trained
    # activation_aware off: no output-aware refit, so 8 bits leave every layer to the converter's
    # int8 rounding (with the refit, 8-bit layers move on the int8 grid towards less output error)
    cm = tinycluster.compile(d / "m.h5", bits=8, frontend={"calib": str(d / "calib.npy"), "activation_aware": False},
                             quiet=True)
    out = cm.write(tmp_path / "o")
    if (out / "int8.tflite").exists():
        (out / "int8.tflite").unlink()
        (out / "float.tflite").unlink()
    res = evaluate(out, d / "test.npz", quiet=True, plots=False)
    assert res["float_acc"] is not None and res["int8_acc"] is not None
    # 8 bits on a Keras model: the clustered model is the int8 model
    assert res["top1_agreement_vs_int8"] == 1.0
