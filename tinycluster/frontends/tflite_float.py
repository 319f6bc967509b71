"""Float ``.tflite`` -> Keras model, so that the Keras front end can prune, cluster, heal and
quantize it like any Keras model.

The TFLite converter cannot take a ``.tflite`` as input, so a float model is rebuilt layer by
layer as a tf-keras functional model with the same weights (read with the ``tflite`` schema
package through the core importer's reader): CONV_2D -> Conv2D, DEPTHWISE_CONV_2D ->
DepthwiseConv2D, FULLY_CONNECTED -> Dense (after a Flatten when its input has rank > 2),
AVERAGE/MAX_POOL_2D, ADD, MUL, RESHAPE, SOFTMAX, PAD (zero padding of H/W), MEAN over H/W,
CONCATENATION, LOGISTIC, TANH, RELU, RELU6; fused activations become Keras activations.
Layouts: TFLite conv filters [O, KH, KW, I] -> Keras [KH, KW, I, O]; depthwise [1, KH, KW, I*M]
-> [KH, KW, I, M]; FC [O, I] -> [I, O]. TFLite's SAME/VALID padding is TensorFlow's, so the
rebuilt model computes the same function (checked against the original in the tests).
Dynamic-range models (int8 weights, float activations, like kws_ref_model_float32.tflite) are
taken too: their weights are dequantized to float.
Anything else: a one-line error naming the op and its index.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import TinyClusterError

SUPPORTED_FLOAT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D",
                       "ADD", "MUL", "RESHAPE", "SOFTMAX", "PAD", "MEAN", "CONCATENATION", "LOGISTIC", "TANH",
                       "RELU", "RELU6")
_ACT = {0: None, 1: "relu", 3: "relu6", 4: "tanh"}  # ActivationFunctionType: NONE, RELU, RELU_N1_TO_1, RELU6, TANH


def _read(path: Path) -> dict:
    from ..importers.tflite import read_model

    return read_model(path)[1]


def _padding(opt) -> str:
    return "same" if int(opt.Padding()) == 0 else "valid"


def tflite_to_keras(path):
    """Rebuild a float32 .tflite as a tf-keras model with the same weights."""
    from .keras import check_model, keras

    path = Path(path)
    m = _read(path)
    k = keras()
    L = k.layers
    tensors, ops = m["tensors"], m["ops"]
    if len(m["inputs"]) != 1 or len(m["outputs"]) != 1:
        raise TinyClusterError(f"{path.name}: the model has {len(m['inputs'])} inputs and {len(m['outputs'])} "
                               "outputs; tinycluster takes single-input, single-output models")
    tin = tensors[m["inputs"][0]]
    if tin["dtype"] != "float32":
        raise TinyClusterError(f"{path.name}: input is {tin['dtype']}, not float32; give a float model or a "
                               "full-integer int8 model")
    if not tin["shape"] or tin["shape"][0] != 1:
        raise TinyClusterError(f"{path.name}: input shape {list(tin['shape'])} has no batch dimension of 1")
    inp = L.Input(tuple(tin["shape"][1:]), name="input")
    env = {m["inputs"][0]: inp}

    def act(x, code, name):
        a = _ACT.get(int(code))
        if int(code) not in _ACT:
            raise TinyClusterError(f"{path.name}: operator {name} uses fused activation {int(code)} "
                                   "(RELU_N1_TO_1/SIGN_BIT), which the front end does not support")
        if a is None:
            return x
        if a == "relu6":
            return L.ReLU(6.0, name=name + "_relu6")(x)
        return L.Activation(a, name=f"{name}_{a}")(x)

    def const(tid):
        return None if tid < 0 else tensors[tid]["data"]

    def fweight(tid):
        """Float weights; int8 weights of a dynamic-range model are dequantized (scale * (q - zp))."""
        if tid < 0:
            return None
        t = tensors[tid]
        w = t["data"]
        if w is None:
            return None
        if w.dtype == np.float32:
            return w
        q = t["quant"]
        if w.dtype == np.int8 and q is not None:
            shape = [1] * w.ndim
            if q.scale.size > 1:
                shape[q.axis] = -1
            return ((w.astype(np.float32) - q.zero_point.reshape(shape)) * q.scale.reshape(shape)).astype(np.float32)
        return None

    def get(tid, op):
        if tid not in env:
            t = tensors[tid]
            what = "a constant" if t["data"] is not None else "an unknown tensor"
            raise TinyClusterError(f"{path.name}: operator {op['index']} ({op['op']}) takes {what} "
                                   f"('{t['name']}') where the front end needs an activation")
        return env[tid]

    for op in ops:
        name = f"{op['op'].lower()}_{op['index']}"
        kind, opt, ins = op["op"], op["options"], op["inputs"]
        if kind not in SUPPORTED_FLOAT_OPS:
            raise TinyClusterError(f"{path.name}: operator {op['index']} is {kind}, which the float front end "
                                   f"does not support (supported: {', '.join(SUPPORTED_FLOAT_OPS)})")
        for tid in op["outputs"] + [i for i in ins if i >= 0 and tensors[i]["data"] is None]:
            if tensors[tid]["dtype"] != "float32":
                raise TinyClusterError(f"{path.name}: operator {op['index']} ({kind}) uses tensor "
                                       f"'{tensors[tid]['name']}' of type {tensors[tid]['dtype']}; the float "
                                       "front end needs a float32 model")
        x = get(ins[0], op)
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = fweight(ins[1])
            b = fweight(ins[2]) if len(ins) > 2 else None
            if w is None:
                raise TinyClusterError(f"{path.name}: operator {op['index']} ({kind}) needs constant float32 "
                                       "(or dynamic-range int8) weights")
            stride = (int(opt.StrideH()), int(opt.StrideW()))
            dil = (int(opt.DilationHFactor()), int(opt.DilationWFactor()))
            if kind == "CONV_2D":
                o, kh, kw, ci = w.shape
                if int(x.shape[-1]) != ci:
                    raise TinyClusterError(f"{path.name}: operator {op['index']} (CONV_2D) is a grouped "
                                           "convolution; not supported")
                layer = L.Conv2D(o, (kh, kw), strides=stride, padding=_padding(opt), dilation_rate=dil,
                                 use_bias=b is not None, name=name)
                y = layer(x)
                layer.set_weights([w.transpose(1, 2, 3, 0)] + ([b] if b is not None else []))
            else:
                _, kh, kw, cm = w.shape
                ci = int(x.shape[-1])
                mult = cm // ci
                layer = L.DepthwiseConv2D((kh, kw), strides=stride, padding=_padding(opt), depth_multiplier=mult,
                                          dilation_rate=dil, use_bias=b is not None, name=name)
                y = layer(x)
                layer.set_weights([w.reshape(kh, kw, ci, mult)] + ([b] if b is not None else []))
            y = act(y, opt.FusedActivationFunction(), name)
        elif kind == "FULLY_CONNECTED":
            w = fweight(ins[1])
            b = fweight(ins[2]) if len(ins) > 2 else None
            if w is None:
                raise TinyClusterError(f"{path.name}: operator {op['index']} (FULLY_CONNECTED) needs constant "
                                       "float32 (or dynamic-range int8) weights")
            if len(x.shape) > 2:
                x = L.Flatten(name=name + "_flatten")(x)
            if int(x.shape[-1]) != w.shape[1]:
                raise TinyClusterError(f"{path.name}: operator {op['index']} (FULLY_CONNECTED): input size "
                                       f"{int(x.shape[-1])} does not match weights {list(w.shape)}")
            layer = L.Dense(w.shape[0], use_bias=b is not None, name=name)
            y = layer(x)
            layer.set_weights([w.T] + ([b] if b is not None else []))
            y = act(y, opt.FusedActivationFunction(), name)
            out_shape = tensors[op["outputs"][0]]["shape"]
            if len(out_shape) > 2:
                y = L.Reshape(tuple(out_shape[1:]), name=name + "_reshape")(y)
        elif kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            cls = L.AveragePooling2D if kind == "AVERAGE_POOL_2D" else L.MaxPooling2D
            y = cls((int(opt.FilterHeight()), int(opt.FilterWidth())), strides=(int(opt.StrideH()), int(opt.StrideW())),
                    padding=_padding(opt), name=name)(x)
            y = act(y, opt.FusedActivationFunction(), name)
        elif kind in ("ADD", "MUL"):
            x2 = get(ins[1], op)
            y = (L.Add if kind == "ADD" else L.Multiply)(name=name)([x, x2])
            if opt is not None:
                y = act(y, opt.FusedActivationFunction(), name)
        elif kind == "RESHAPE":
            shape = tensors[op["outputs"][0]]["shape"]
            y = L.Reshape(tuple(int(d) for d in shape[1:]), name=name)(x)
        elif kind == "SOFTMAX":
            if opt is not None and abs(float(opt.Beta()) - 1.0) > 1e-6:
                raise TinyClusterError(f"{path.name}: operator {op['index']} (SOFTMAX) has beta {opt.Beta()}; "
                                       "only beta 1 is supported")
            y = L.Softmax(name=name)(x)
        elif kind == "LOGISTIC":
            y = L.Activation("sigmoid", name=name)(x)
        elif kind == "TANH":
            y = L.Activation("tanh", name=name)(x)
        elif kind == "RELU":
            y = L.ReLU(name=name)(x)
        elif kind == "RELU6":
            y = L.ReLU(6.0, name=name)(x)
        elif kind == "PAD":
            p = const(ins[1])
            if p is None or p.shape != (4, 2) or p[0].any() or p[3].any():
                raise TinyClusterError(f"{path.name}: operator {op['index']} (PAD) pads other than height/width; "
                                       "not supported by the float front end")
            y = L.ZeroPadding2D(((int(p[1, 0]), int(p[1, 1])), (int(p[2, 0]), int(p[2, 1]))), name=name)(x)
        elif kind == "MEAN":
            axes = sorted(int(a) % 4 for a in np.ravel(const(ins[1])))
            if axes != [1, 2]:
                raise TinyClusterError(f"{path.name}: operator {op['index']} (MEAN) over axes {axes}; only the "
                                       "spatial mean (axes 1, 2) is supported")
            keep = bool(opt.KeepDims()) if opt is not None else False
            y = L.GlobalAveragePooling2D(keepdims=keep, name=name)(x)
        elif kind == "CONCATENATION":
            xs = [get(t, op) for t in ins]
            axis = int(opt.Axis())
            y = L.Concatenate(axis=axis, name=name)(xs)
            y = act(y, opt.FusedActivationFunction(), name)
        env[op["outputs"][0]] = y
    out_t = m["outputs"][0]
    if out_t not in env:
        raise TinyClusterError(f"{path.name}: the model's output is not computed by any supported operator")
    model = k.Model(inp, env[out_t], name=path.stem.replace(".", "_"))
    check_model(model, source=str(path))
    return model
