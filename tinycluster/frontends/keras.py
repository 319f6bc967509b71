"""Keras front end: load a Keras model (``.keras``, ``.h5``, SavedModel folder) with tf-keras,
check its layers, and convert it to a full-integer int8 ``.tflite``.

TensorFlow is imported lazily and always with ``TF_USE_LEGACY_KERAS=1`` (tf-keras, the
Keras 2 API that tfmot needs); users never set it themselves. Every user mistake becomes a
one-line :class:`~tinycluster.errors.TinyClusterError`.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np

from ..errors import TinyClusterError

#: Keras layer classes the int8 pipeline can take (they convert to the core's TFLite ops)
SUPPORTED_LAYERS = (
    "InputLayer", "Conv2D", "DepthwiseConv2D", "Dense", "BatchNormalization", "Activation",
    "ReLU", "Softmax", "AveragePooling2D", "MaxPooling2D", "GlobalAveragePooling2D",
    "Flatten", "Reshape", "Add", "Multiply", "Concatenate", "ZeroPadding2D", "Dropout",
    "Rescaling",
    # tfmot wrappers are unwrapped before the check
)
#: activations (``activation=`` or Activation layers) with an int8 TFLite op in the core
SUPPORTED_ACTIVATIONS = ("linear", "relu", "relu6", "softmax", "sigmoid", "tanh")
#: layers whose kernel is clustered: class name -> attribute holding the kernel
WEIGHTED_LAYERS = {"Conv2D": "kernel", "DepthwiseConv2D": "depthwise_kernel", "Dense": "kernel"}


def tf():
    """Import TensorFlow with tf-keras as ``tf.keras`` (quietly)."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from .._quiet import import_tensorflow

    _tf = import_tensorflow()

    try:
        _tf.get_logger().setLevel("ERROR")
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except Exception:  # pragma: no cover - logging niceties only
        pass
    return _tf


def keras():
    tf()
    import tf_keras  # noqa: WPS433

    return tf_keras


def is_keras_path(path) -> bool:
    p = Path(path)
    if p.is_dir():
        return True
    return p.suffix.lower() in (".keras", ".h5", ".hdf5")


def load_keras(path):
    """Load a Keras model file or SavedModel folder; check that every layer is supported."""
    p = Path(path)
    if not p.exists():
        raise TinyClusterError(f"{p}: no such file (give a .keras, .h5 or SavedModel folder)")
    if p.is_dir() and not (p / "saved_model.pb").exists() and not (p / "saved_model.pbtxt").exists():
        raise TinyClusterError(f"{p}: folder holds no saved_model.pb; give a .keras, .h5 or SavedModel folder")
    if p.is_file() and p.suffix.lower() not in (".keras", ".h5", ".hdf5"):
        raise TinyClusterError(f"{p}: not a Keras model (expected .keras, .h5 or a SavedModel folder)")
    k = keras()
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            model = k.models.load_model(str(p), compile=False)
    except Exception as e:  # any failure in h5py/zipfile/keras deserialisation
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if len(reason) > 160:
            reason = reason[:157] + "..."
        raise TinyClusterError(f"{p}: cannot load the Keras model ({reason}); is the file complete "
                               "and saved by Keras?") from None
    if not isinstance(model, k.Model):
        raise TinyClusterError(f"{p}: holds no Keras model (loaded a {type(model).__name__})")
    check_model(model, source=str(p))
    return model


def iter_layers(model):
    """All leaf layers (nested models flattened), in model order."""
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.__class__.__name__ in ("Functional", "Sequential", "Model"):
            yield from iter_layers(layer)
        else:
            yield layer


def _act_name(act) -> str:
    if act is None:
        return "linear"
    name = getattr(act, "__name__", None) or str(act)
    return name


def check_model(model, source: str = "model"):
    """Raise a TinyClusterError for a layer or activation outside the supported set."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise TinyClusterError(f"{source}: model has {len(model.inputs)} inputs and {len(model.outputs)} "
                               "outputs; tinycluster takes single-input, single-output models")
    for layer in iter_layers(model):
        cls = layer.__class__.__name__
        if cls not in SUPPORTED_LAYERS:
            raise TinyClusterError(
                f"{source}: layer '{layer.name}' ({cls}) is not supported; supported layers: "
                f"{', '.join(SUPPORTED_LAYERS)}")
        act = getattr(layer, "activation", None)
        if act is not None and _act_name(act) not in SUPPORTED_ACTIVATIONS:
            raise TinyClusterError(
                f"{source}: layer '{layer.name}' ({cls}) uses activation '{_act_name(act)}', which is not "
                f"supported; supported activations: {', '.join(SUPPORTED_ACTIVATIONS)}")
        if cls == "Conv2D" and tuple(layer.dilation_rate) != (1, 1) and tuple(layer.strides) != (1, 1):
            raise TinyClusterError(f"{source}: layer '{layer.name}' (Conv2D) combines dilation and stride; "
                                   "not supported")


def weighted_layers(model):
    """(layer, kernel variable) for every layer whose kernel tinycluster clusters."""
    out = []
    for layer in iter_layers(model):
        attr = WEIGHTED_LAYERS.get(layer.__class__.__name__)
        if attr is not None:
            out.append((layer, getattr(layer, attr)))
    return out


def kernel_to_channels_last(layer, w: np.ndarray) -> np.ndarray:
    """View a kernel as [..., output channels] in TFLite's channel order.

    DepthwiseConv2D [h, w, in, mult] -> [h, w, in*mult] (TFLite channel i*mult + m)."""
    if layer.__class__.__name__ == "DepthwiseConv2D":
        return w.reshape(w.shape[0], w.shape[1], -1)
    return w


def channels_last_to_kernel(layer, w: np.ndarray, shape) -> np.ndarray:
    return w.reshape(shape)


def clone_model(model):
    """Deep copy (architecture + weights)."""
    k = keras()
    m2 = k.models.clone_model(model)
    m2.set_weights(model.get_weights())
    return m2


def convert_to_int8(model, calib: np.ndarray, *, quiet: bool = True) -> bytes:
    """Full-integer int8 .tflite: int8 input/output, TFLITE_BUILTINS_INT8, per-channel weights,
    activation ranges from ``calib`` (float, the model's input shape, first axis = samples)."""
    t = tf()
    calib = np.asarray(calib, dtype=np.float32)

    def rep():
        for i in range(calib.shape[0]):
            yield [calib[i:i + 1]]

    conv = _converter(model)
    conv.optimizations = [t.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = t.int8
    conv.inference_output_type = t.int8
    try:
        with _quiet_fds(quiet):
            return bytes(conv.convert())
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TinyClusterError(f"{model.name}: the TFLite converter failed ({reason[:200]})") from None


def convert_to_float(model, *, quiet: bool = True) -> bytes:
    """Plain float32 .tflite of the model (for float accuracy in ``evaluate``)."""
    conv = _converter(model)
    with _quiet_fds(quiet):
        return bytes(conv.convert())


def _converter(model):
    """TFLiteConverter on the model traced with a batch of exactly 1: every shape is static, so
    shape arithmetic (e.g. a Reshape layer's tf.shape(x)[0]) folds into constants instead of
    becoming SHAPE / STRIDED_SLICE / PACK operators the int8 runtime does not have."""
    t = tf()
    spec = t.TensorSpec((1,) + tuple(int(d) for d in model.input_shape[1:]), t.float32)
    fn = t.function(lambda x: model(x, training=False))
    cf = fn.get_concrete_function(spec)
    return t.lite.TFLiteConverter.from_concrete_functions([cf], model)


@contextlib.contextmanager
def _quiet_fds(quiet: bool):
    """Silence the converter's C++ logging (file descriptors 1 and 2) when quiet."""
    if not quiet:
        yield
        return
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved + [null]:
            os.close(fd)


def activation_importance(model, x: np.ndarray, batch_size: int = 32) -> dict:
    """Per weighted layer, the mean squared input activation each kernel weight multiplies,
    shaped to broadcast against the kernel viewed channels-last (None when uniform).

    Conv2D [kh, kw, cin, cout]: E[x_cin^2] -> [1, 1, cin, 1]; Dense [in, out]: E[x_i^2] -> [in, 1];
    DepthwiseConv2D: every output channel sees one input channel, so the weights of a channel are
    equally important -> None. Used as k-means sample weights: the squared error of a weight
    costs, to first order, ``E[x^2] * dw^2`` in the layer's output.
    """
    k = keras()
    wl = [(layer, var) for layer, var in weighted_layers(model) if layer.__class__.__name__ != "DepthwiseConv2D"]
    if not wl:
        return {}
    try:
        sub = k.Model(model.inputs, [layer.input for layer, _ in wl])
    except Exception:  # a layer called more than once or nested: no importance, plain k-means
        return {}
    sums = [None] * len(wl)
    n = 0
    for i in range(0, x.shape[0], batch_size):
        outs = sub(x[i:i + batch_size], training=False)
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        for j, o in enumerate(outs):
            a = np.asarray(o, dtype=np.float64)
            s = (a.reshape(-1, a.shape[-1]) ** 2).sum(axis=0)
            sums[j] = s if sums[j] is None else sums[j] + s
        n += outs[0].shape[0] * int(np.prod(outs[0].shape[1:-1]) or 1)
    res = {}
    for (layer, var), s in zip(wl, sums):
        e = s / max(n, 1)
        if layer.__class__.__name__ == "Conv2D":
            res[layer.name] = e.reshape(1, 1, -1, 1)
        else:
            res[layer.name] = e.reshape(-1, 1)
    return res


def _patches(layer, a, t):
    """Input patches of a Conv2D/DepthwiseConv2D call, [N, oh, ow, kh*kw*cin] in (kh, kw, cin) order
    (the order of the kernel reshaped to [kh*kw*cin, ...])."""
    kh, kw = layer.kernel_size
    sh, sw = layer.strides
    dh, dw = layer.dilation_rate
    return t.image.extract_patches(a, sizes=[1, kh, kw, 1], strides=[1, sh, sw, 1], rates=[1, dh, dw, 1],
                                   padding=layer.padding.upper())


def layer_input_moments(model, x: np.ndarray, batch_size: int = 16, max_rows: int = 4096) -> dict:
    """Per weighted layer, ``H = E[p p^T]`` over the input vectors ``p`` its output channels multiply
    (conv: im2col patches; dense: the input vector), on inputs ``x``.

    Returns ``{layer name: H}`` with H [d, d] (Conv2D: d = kh*kw*cin; Dense: d = in) or, for
    DepthwiseConv2D, [C, kh*kw, kh*kw] per output channel (channel i*mult + m sees input channel
    i). Rows are the kernel viewed channels-last and reshaped to [d, C]. Layers whose input is
    not reachable as one tensor (shared or nested layers) or grouped convolutions are left out.
    At most ``max_rows`` patch positions per batch are used (an even subsample). With ``n`` input
    vectors in all, H is shrunk towards its diagonal by ``d / (d + n)`` (a dense layer with fewer
    samples than inputs would otherwise have a singular H that the refit over-fits).
    """
    t = tf()
    k = keras()
    wl = []
    for layer, var in weighted_layers(model):
        if layer.__class__.__name__ == "Conv2D" and int(getattr(layer, "groups", 1)) != 1:
            continue
        wl.append((layer, var))
    if not wl:
        return {}
    try:
        sub = k.Model(model.inputs, [layer.input for layer, _ in wl])
    except Exception:
        return {}
    sums = [None] * len(wl)
    counts = [0] * len(wl)
    for i in range(0, x.shape[0], batch_size):
        outs = sub(x[i:i + batch_size], training=False)
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        for j, ((layer, var), o) in enumerate(zip(wl, outs)):
            cls = layer.__class__.__name__
            if cls == "Dense":
                p = np.asarray(o, dtype=np.float64)
                p = p.reshape(-1, p.shape[-1])
            else:
                p = np.asarray(_patches(layer, o, t), dtype=np.float64)
                p = p.reshape(-1, p.shape[-1])
            if p.shape[0] > max_rows:
                p = p[np.linspace(0, p.shape[0] - 1, max_rows).astype(np.int64)]
            if cls == "DepthwiseConv2D":
                cin = int(o.shape[-1])
                p = p.reshape(p.shape[0], -1, cin)  # [n, kh*kw, cin]
                s = np.einsum("npc,nqc->cpq", p, p)
            else:
                s = p.T @ p
            sums[j] = s if sums[j] is None else sums[j] + s
            counts[j] += p.shape[0]
    res = {}
    for (layer, var), s, n in zip(wl, sums, counts):
        H = s / max(n, 1)
        # shrink towards the diagonal when there are few input vectors for the dimension (a dense
        # layer sees one per sample): an H of rank < d would let the refit fit the calibration set
        d = H.shape[-1]
        alpha = d / (d + n)
        diag = np.einsum("...ii->...i", H)
        H = (1.0 - alpha) * H
        idx = np.arange(d)
        H[..., idx, idx] += alpha * diag
        if layer.__class__.__name__ == "DepthwiseConv2D":
            mult = int(var.shape[-1])
            H = np.repeat(H, mult, axis=0)  # channel i*mult + m sees input channel i
        res[layer.name] = H
    return res
