"""End to end on int8 models nobody here hand-wrote: Keras graphs converted by TFLiteConverter,
covering the op set (strides, dilation, SAME/VALID, depth multiplier, pools, broadcast ADD/MUL,
concat, pad, mean, activations, softmax), compiled and checked byte for byte against TFLite Micro."""
import numpy as np
import pytest

import tinycluster
import tinycluster.errors
from tinycluster._quiet import import_tensorflow
from tinycluster.verify import verify


def to_int8_tflite(model, input_shape, seed=0, float_io=False):
    tf = import_tensorflow()
    rng = np.random.default_rng(seed)

    def rep():
        for _ in range(32):
            yield [rng.normal(0, 1, size=(1, *input_shape)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not float_io:  # else float32 I/O: QUANTIZE in front, DEQUANTIZE behind
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def build(kind):
    tf = import_tensorflow()
    import tf_keras as keras
    from tf_keras import layers as L

    keras.utils.set_random_seed(0)
    if kind == "convnet":
        shape = (20, 18, 3)
        x = inp = L.Input(shape, batch_size=1)
        x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
        x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu6")(x)
        a = L.Conv2D(16, 1, activation=None)(x)
        b = L.Conv2D(16, 3, dilation_rate=2, padding="same")(x)
        x = L.Add()([a, b])
        x = L.MaxPooling2D(2)(x)
        x = L.Conv2D(12, (3, 2), strides=(1, 2), padding="valid", activation="tanh")(x)
        x = L.GlobalAveragePooling2D()(x)
        x = L.Dense(10, activation="softmax")(x)
    elif kind == "branches":
        shape = (16, 16, 4)
        x = inp = L.Input(shape, batch_size=1)
        x = L.ZeroPadding2D(((1, 2), (0, 1)))(x)
        a = L.Conv2D(6, 3, activation="sigmoid")(x)
        b = L.AveragePooling2D(3, strides=1)(x)
        x = L.Concatenate()([a, b])
        x = L.Multiply()([x, L.Conv2D(10, 1)(x)])
        x = L.DepthwiseConv2D(5, strides=2, padding="same")(x)
        x = tf.reduce_mean(x, axis=[1, 2], keepdims=False)
        x = L.Dense(5)(x)
    elif kind in ("mlp", "mlp_floatio"):
        shape = (37,)
        x = inp = L.Input(shape, batch_size=1)
        x = L.Dense(33, activation="relu")(x)
        x = L.Dense(64, activation="tanh")(x)
        x = L.Dense(7, activation="sigmoid")(x)
    else:
        raise ValueError(kind)
    model = keras.Model(inp, x)
    # larger weights than the initializer gives, so that clustering has something to do
    for w in model.weights:
        if "kernel" in w.name:
            w.assign(np.random.default_rng(1).normal(0, 0.5, size=w.shape).astype(np.float32))
    return to_int8_tflite(model, shape, float_io=kind.endswith("floatio"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["convnet", "branches", "mlp", "mlp_floatio"])
def test_synthetic_models_bit_exact(kind, tmp_path):
    data = build(kind)
    src = tmp_path / f"{kind}.tflite"
    src.write_bytes(data)
    for i, opts in enumerate([dict(bits=4), dict(bits=3, granularity="per-tensor"), dict(clusters=7),
                              dict(lossless=True), dict(bits=1), dict(bits=2, granularity="per-channel")]):
        m = tinycluster.compile(src, **opts)
        out = m.write(tmp_path / f"out{i}")
        r = verify(out, samples=15, seed=i)
        assert r["mismatches"] == 0, (kind, opts, r)


def test_two_input_model_is_refused(tmp_path):
    tf = import_tensorflow()
    import tf_keras as keras
    from tf_keras import layers as L

    a, b = L.Input((8,), batch_size=1), L.Input((8,), batch_size=1)
    model = keras.Model([a, b], L.Dense(4)(L.Add()([a, b])))
    rng = np.random.default_rng(0)

    def rep():
        for _ in range(8):
            yield [rng.normal(size=(1, 8)).astype(np.float32), rng.normal(size=(1, 8)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    src = tmp_path / "two.tflite"
    src.write_bytes(conv.convert())
    with pytest.raises(tinycluster.errors.TinyClusterError, match="2 inputs"):
        tinycluster.compile(src, bits=4)
