"""Structure-aware fuzzing of tinycluster: mutants of real and synthetic .tflite models, each run
through the real command line (compile, then verify against TFLite Micro).

Used by ``tests/test_fuzz.py`` (a few hundred mutants per CI run, fixed seed) and by
``benchmarks/fuzz.py`` (``make fuzz``: thousands, any seed).

A mutant is made by

- **structure-aware** edits through the TFLite schema's object API
  (:mod:`tinycluster.importers.schema`): tensor shapes, types, quantization (scales, zero points,
  quantized dimension), builtin options (every field), operator/tensor/buffer/opcode indices,
  graph structure (operators dropped, duplicated, swapped; graph inputs/outputs), buffers,
  extreme weights and biases;
- **byte-level** edits of the serialized file: bit flips, byte overwrites, truncation, insertion
  and deletion.

Each mutant must end in one of two ways (anything else is a failure of tinycluster):

- ``rejected``: exit code 1, one line ``error: <file>: ...`` naming the file, no traceback, no
  dependency exception text, nothing written (no output folder, no temporary folder left);
- ``accepted``: exit code 0, and then TFLite Micro (in a separate process: it may crash) runs the
  clustered model; where it accepts it, ``verify`` must find every output byte equal; where it
  refuses it, the mutant is counted as ``accepted_tflm_refuses`` (tinycluster should refuse what
  TFLite Micro refuses: validation parity) and the output must still build with ``-Werror`` and
  pass its own self-test.

Every tinycluster and TFLite Micro call runs in a worker process with a time limit (a hang or a
crash is recorded, the worker restarted).
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED_MODELS = (REPO / ".." / "shared" / "models").resolve()


def _schema():
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tinycluster.importers.schema import schema

    return schema()


# =============================================================================================
# seed models built with the object API (every supported op, small, valid for TFLite Micro)
# =============================================================================================
class ModelBuilder:
    """A single-subgraph int8 model, written with the schema's object API."""

    def __init__(self):
        self.S = _schema()
        self.tensors, self.buffers, self.ops, self.codes = [], [self.S.BufferT()], [], []

    def _buffer(self, data) -> int:
        b = self.S.BufferT()
        b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8).copy()
        self.buffers.append(b)
        return len(self.buffers) - 1

    def tensor(self, name, shape, ttype="INT8", q=None, data=None, qdim=0) -> int:
        t = self.S.TensorT()
        t.name = name
        t.shape = [int(d) for d in shape]
        t.type = getattr(self.S.TensorType, ttype)
        t.buffer = self._buffer(data) if data is not None else 0
        if q is not None:
            scale, zp = q
            qp = self.S.QuantizationParametersT()
            qp.scale = [float(np.float32(s)) for s in np.atleast_1d(scale)]
            qp.zeroPoint = [int(z) for z in np.atleast_1d(zp)]
            qp.quantizedDimension = qdim
            t.quantization = qp
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, name, inputs, outputs, options=None, **fields) -> None:
        code = getattr(self.S.BuiltinOperator, name)
        if code not in self.codes:
            self.codes.append(code)
        o = self.S.OperatorT()
        o.opcodeIndex = self.codes.index(code)
        o.inputs, o.outputs = list(inputs), list(outputs)
        if options is not None:
            opt = getattr(self.S, options + "T")()
            for k, v in fields.items():
                assert hasattr(opt, k), (options, k)
                setattr(opt, k, v)
            o.builtinOptionsType = getattr(self.S.BuiltinOptions, options)
            o.builtinOptions = opt
        self.ops.append(o)

    def finish(self, inputs, outputs) -> bytes:
        from tinycluster.importers.schema import write_model_t

        S = self.S
        m = S.ModelT()
        m.version = 3
        m.description = "tinycluster fuzz seed"
        for c in self.codes:
            oc = S.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = c, min(c, 127), 1
            m.operatorCodes = (m.operatorCodes or []) + [oc]
        sg = S.SubGraphT()
        sg.tensors, sg.operators, sg.inputs, sg.outputs, sg.name = self.tensors, self.ops, list(inputs), list(outputs), "main"
        m.subgraphs = [sg]
        m.buffers = self.buffers
        return write_model_t(m)


def _w(rng, shape):
    return rng.integers(-127, 128, size=shape).astype(np.int8)


def _b(rng, n, mag=2000):
    return rng.integers(-mag, mag, size=n).astype("<i4")


def seed_conv_chain(seed: int = 1) -> bytes:
    """float in -> QUANTIZE -> CONV_2D (RELU6, per channel) -> DEPTHWISE (x2, stride 2, RELU) ->
    MAX_POOL -> AVERAGE_POOL -> RESHAPE -> FULLY_CONNECTED -> SOFTMAX -> DEQUANTIZE -> float out."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    x = b.tensor("x", [1, 8, 8, 3], "FLOAT32")
    xq = b.tensor("xq", [1, 8, 8, 3], q=(0.02, -5))
    b.op("QUANTIZE", [x], [xq], "QuantizeOptions")
    ws = rng.uniform(0.002, 0.01, 4)
    w1 = b.tensor("conv_w", [4, 3, 3, 3], q=(ws, [0] * 4), data=_w(rng, (4, 3, 3, 3)))
    b1 = b.tensor("conv_b", [4], "INT32", q=(0.02 * ws, [0] * 4), data=_b(rng, 4))
    c1 = b.tensor("conv_out", [1, 8, 8, 4], q=(0.03, -128))
    b.op("CONV_2D", [xq, w1, b1], [c1], "Conv2DOptions", padding=0, strideW=1, strideH=1, fusedActivationFunction=3)
    ds = rng.uniform(0.005, 0.02, 8)
    w2 = b.tensor("dw_w", [1, 3, 3, 8], q=(ds, [0] * 8), data=_w(rng, (1, 3, 3, 8)), qdim=3)
    b2 = b.tensor("dw_b", [8], "INT32", q=(0.03 * ds, [0] * 8), data=_b(rng, 8))
    c2 = b.tensor("dw_out", [1, 4, 4, 8], q=(0.05, -128))
    b.op("DEPTHWISE_CONV_2D", [c1, w2, b2], [c2], "DepthwiseConv2DOptions", padding=0, strideW=2, strideH=2,
         depthMultiplier=2, fusedActivationFunction=1)
    p1 = b.tensor("maxpool", [1, 2, 2, 8], q=(0.05, -128))
    b.op("MAX_POOL_2D", [c2], [p1], "Pool2DOptions", padding=1, strideW=2, strideH=2, filterWidth=2, filterHeight=2)
    p2 = b.tensor("avgpool", [1, 1, 1, 8], q=(0.05, -128))
    b.op("AVERAGE_POOL_2D", [p1], [p2], "Pool2DOptions", padding=1, strideW=2, strideH=2, filterWidth=2,
         filterHeight=2)
    shp = b.tensor("shape", [2], "INT32", data=np.array([1, 8], "<i4"))
    r = b.tensor("flat", [1, 8], q=(0.05, -128))
    b.op("RESHAPE", [p2, shp], [r], "ReshapeOptions", newShape=[1, 8])
    w3 = b.tensor("fc_w", [5, 8], q=(0.01, 0), data=_w(rng, (5, 8)))
    b3 = b.tensor("fc_b", [5], "INT32", q=(0.0005, 0), data=_b(rng, 5))
    f = b.tensor("logits", [1, 5], q=(0.1, 3))
    b.op("FULLY_CONNECTED", [r, w3, b3], [f], "FullyConnectedOptions")
    s = b.tensor("probs", [1, 5], q=(1 / 256, -128))
    b.op("SOFTMAX", [f], [s], "SoftmaxOptions", beta=1.0)
    y = b.tensor("y", [1, 5], "FLOAT32")
    b.op("DEQUANTIZE", [s], [y])
    return b.finish([x], [y])


def seed_elementwise(seed: int = 2) -> bytes:
    """int8 in -> PAD -> ADD (broadcast constant, RELU) -> MUL -> CONCATENATION -> MEAN ->
    LOGISTIC -> TANH -> RELU -> RELU6 -> QUANTIZE (requantize) -> int8 out."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    q0 = (0.04, 3)
    x = b.tensor("x", [1, 4, 4, 4], q=q0)
    pads = b.tensor("pads", [4, 2], "INT32", data=np.array([[0, 0], [1, 1], [1, 1], [0, 0]], "<i4"))
    p = b.tensor("pad_out", [1, 6, 6, 4], q=q0)
    b.op("PAD", [x, pads], [p], "PadOptions")
    k = b.tensor("bias_c", [1, 1, 1, 4], q=(0.02, -10), data=_w(rng, (1, 1, 1, 4)))
    a = b.tensor("add_out", [1, 6, 6, 4], q=q0)
    b.op("ADD", [p, k], [a], "AddOptions", fusedActivationFunction=1)
    mq = (0.08, -20)
    m = b.tensor("mul_out", [1, 6, 6, 4], q=mq)
    b.op("MUL", [a, p], [m], "MulOptions")
    cat = b.tensor("cat", [1, 6, 6, 8], q=q0)
    b.op("CONCATENATION", [p, a], [cat], "ConcatenationOptions", axis=3)
    axes = b.tensor("axes", [2], "INT32", data=np.array([1, 2], "<i4"))
    mean = b.tensor("mean", [1, 1, 1, 8], q=(0.03, 1))
    b.op("MEAN", [cat, axes], [mean], "ReducerOptions", keepDims=True)
    lg = b.tensor("logistic", [1, 1, 1, 8], q=(1 / 256, -128))
    b.op("LOGISTIC", [mean], [lg])
    th = b.tensor("tanh", [1, 1, 1, 8], q=(1 / 128, 0))
    b.op("TANH", [lg], [th])
    rl = b.tensor("relu", [1, 1, 1, 8], q=(0.01, -128))
    b.op("RELU", [th], [rl])
    r6 = b.tensor("relu6", [1, 1, 1, 8], q=(0.01, -128))
    b.op("RELU6", [rl], [r6])
    y = b.tensor("y", [1, 1, 1, 8], q=(0.02, 5))
    b.op("QUANTIZE", [r6], [y])
    # the MUL result joins the output through a second ADD so that every op feeds the output
    mm = b.tensor("mul_mean", [1, 1, 1, 4], q=(0.05, 0))
    axes2 = b.tensor("axes2", [2], "INT32", data=np.array([1, 2], "<i4"))
    b.op("MEAN", [m, axes2], [mm], "ReducerOptions", keepDims=True)
    cat2 = b.tensor("out_cat", [1, 1, 1, 12], q=(0.02, 5))
    mmq = b.tensor("mul_mean_q", [1, 1, 1, 4], q=(0.02, 5))
    b.op("QUANTIZE", [mm], [mmq])
    b.op("CONCATENATION", [y, mmq], [cat2], "ConcatenationOptions", axis=3)
    return b.finish([x], [cat2])


def seed_mlp(seed: int = 3) -> bytes:
    """int8 [2, 12] -> FULLY_CONNECTED (RELU, 2 rows) -> FULLY_CONNECTED (per-tensor, weight zero
    point) -> TANH -> int8 out: tiny, the cheapest seed."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    x = b.tensor("x", [2, 12], q=(0.05, -7))
    w1 = b.tensor("w1", [10, 12], q=(0.01, 0), data=_w(rng, (10, 12)))
    b1 = b.tensor("b1", [10], "INT32", q=(0.0005, 0), data=_b(rng, 10))
    h = b.tensor("h", [2, 10], q=(0.08, -128))
    b.op("FULLY_CONNECTED", [x, w1, b1], [h], "FullyConnectedOptions", fusedActivationFunction=1)
    w2 = b.tensor("w2", [6, 10], q=(0.02, 0), data=_w(rng, (6, 10)))
    o = b.tensor("o", [2, 6], q=(0.1, 10))
    b.op("FULLY_CONNECTED", [h, w2, -1], [o], "FullyConnectedOptions")
    y = b.tensor("y", [2, 6], q=(1 / 128, 0))
    b.op("TANH", [o], [y])
    return b.finish([x], [y])


SYNTHETIC = {"seed_conv_chain": seed_conv_chain, "seed_elementwise": seed_elementwise, "seed_mlp": seed_mlp}
#: (seed model, weight): small models weigh more (cheap to compile and verify)
DEFAULT_WEIGHTS = {"seed_mlp": 4, "seed_conv_chain": 4, "seed_elementwise": 4, "kws_ref_model.tflite": 3,
                   "ad01_int8.tflite": 1, "pretrainedResnet_quant.tflite": 1, "vww_96_int8.tflite": 0.5}


def seed_models(weights=None) -> dict:
    """{name: (bytes, weight)} of the seeds that exist here (shared models may be absent)."""
    weights = weights or DEFAULT_WEIGHTS
    out = {}
    for name, w in weights.items():
        if name in SYNTHETIC:
            out[name] = (SYNTHETIC[name](), w)
        elif (SHARED_MODELS / name).exists():
            out[name] = ((SHARED_MODELS / name).read_bytes(), w)
    return out


# =============================================================================================
# mutators
# =============================================================================================
INTS = [0, -1, 1, 2, 3, 4, 7, 8, 16, 127, 128, 255, 256, 1000, 65535, 65536, 2 ** 31 - 1, -2 ** 31]
FLOATS = [0.0, -0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e-30, 1e30, 1e-45, 3.4e38, 1e-9, 0.5, 2.0,
          1.0 / 256, 1.0 / 128]


class Skip(Exception):
    """This mutator does not apply to the chosen model."""


def _pick(rng, seq):
    if not seq:
        raise Skip()
    return seq[int(rng.integers(len(seq)))]


def _sg(m):
    return m.subgraphs[0]


def _lst(x) -> list:
    """A vector field of the object API (None, list or numpy array) as a list of Python numbers."""
    return [] if x is None else [v.item() if hasattr(v, "item") else v for v in x]


def _tensor(m, rng):
    i = int(rng.integers(len(_sg(m).tensors)))
    return i, _sg(m).tensors[i]


def _quantized(m, rng):
    ts = [(i, t) for i, t in enumerate(_sg(m).tensors) if t.quantization is not None and t.quantization.scale is not None
          and len(t.quantization.scale)]
    return _pick(rng, ts)


def _int_like(rng, v):
    v = int(v)
    return _pick(rng, INTS + [v + 1, v - 1, v * 2, -v, v + int(rng.integers(-3, 4))])


def mut_shape(m, rng):
    i, t = _tensor(m, rng)
    shape = _lst(t.shape)
    kind = int(rng.integers(4))
    if kind == 0 and shape:
        k = int(rng.integers(len(shape)))
        shape[k] = _int_like(rng, shape[k])
    elif kind == 1 and shape:
        shape.pop(int(rng.integers(len(shape))))
    elif kind == 2:
        shape.insert(int(rng.integers(len(shape) + 1)), _pick(rng, [1, 2, 0, 3]))
    else:
        shape = list(rng.permutation(shape)) if len(shape) > 1 else []
    t.shape = [int(d) for d in shape]
    return f"tensor {i} shape -> {t.shape}"


def mut_type(m, rng):
    i, t = _tensor(m, rng)
    t.type = _pick(rng, list(range(0, 23)) + [9, 9, 2, 0, 40, -1])
    return f"tensor {i} type -> {t.type}"


def mut_scale(m, rng):
    i, t = _quantized(m, rng)
    q = t.quantization
    s = _lst(q.scale)
    kind = int(rng.integers(4))
    if kind <= 1:
        k = int(rng.integers(len(s)))
        s[k] = _pick(rng, FLOATS + [s[k] * 2, s[k] / 3, -s[k], s[k] * 1e6, s[k] * 1e-6])
        what = f"scale[{k}] -> {s[k]}"
    elif kind == 2:
        s = s[: int(rng.integers(len(s) + 1))] if len(s) > 1 else s + s
        what = f"{len(s)} scales"
    else:
        s = [_pick(rng, FLOATS)] * len(s)
        what = f"all scales -> {s[0]}"
    q.scale = s
    return f"tensor {i} {what}"


def mut_zero_point(m, rng):
    i, t = _quantized(m, rng)
    q = t.quantization
    z = _lst(q.zeroPoint)
    kind = int(rng.integers(4))
    if kind <= 1 and z:
        k = int(rng.integers(len(z)))
        z[k] = _pick(rng, [1000, -129, 128, 127, -128, 2 ** 40, -2 ** 40, 255, z[k] + 1, -z[k], 5])
        what = f"zero_point[{k}] -> {z[k]}"
    elif kind == 2:
        z = [] if z else [0]
        what = f"{len(z)} zero points"
    else:
        z = z + z[:1] if z else [7, 7]
        what = f"{len(z)} zero points"
    q.zeroPoint = z
    return f"tensor {i} {what}"


def mut_quant_misc(m, rng):
    i, t = _tensor(m, rng)
    kind = int(rng.integers(3))
    if kind == 0:
        t.quantization = None
        return f"tensor {i} quantization removed"
    if t.quantization is None:
        q = _schema().QuantizationParametersT()
        q.scale, q.zeroPoint = [0.1], [0]
        t.quantization = q
        return f"tensor {i} quantization added"
    if kind == 1:
        t.quantization.quantizedDimension = _pick(rng, [-1, 0, 1, 2, 3, 4, 7])
        return f"tensor {i} quantized_dimension -> {t.quantization.quantizedDimension}"
    t.quantization.min, t.quantization.max = [-1.0], [1.0]
    return f"tensor {i} min/max added"


def _ops_with_options(m):
    return [(i, o) for i, o in enumerate(_sg(m).operators) if o.builtinOptions is not None]


def mut_option(m, rng):
    i, o = _pick(rng, _ops_with_options(m))
    fields = sorted(vars(o.builtinOptions))
    if not fields:
        raise Skip()
    f = _pick(rng, fields)
    v = getattr(o.builtinOptions, f)
    if isinstance(v, bool):
        nv = not v
    elif isinstance(v, int):
        nv = _int_like(rng, v) if rng.random() < 0.6 else int(rng.integers(-2, 8))
        nv = int(np.clip(nv, -2 ** 31, 2 ** 31 - 1))
        if f in ("padding", "fusedActivationFunction", "weightsFormat", "quantizedBiasType"):
            nv = int(np.clip(nv, -128, 127))  # byte-wide enums in the schema
    elif isinstance(v, float):
        nv = _pick(rng, FLOATS)
    elif isinstance(v, (list, np.ndarray)):
        nv = [_int_like(rng, x) for x in _lst(v)][: int(rng.integers(len(v) + 2))]
    else:
        raise Skip()
    setattr(o.builtinOptions, f, nv)
    return f"operator {i} option {f}: {v} -> {nv}"


def mut_options_type(m, rng):
    i, o = _pick(rng, list(enumerate(_sg(m).operators)))
    kind = int(rng.integers(3))
    if kind == 0:
        o.builtinOptions, o.builtinOptionsType = None, 0
        return f"operator {i} options removed"
    others = [op for op in _sg(m).operators if op.builtinOptions is not None and op.builtinOptionsType != o.builtinOptionsType]
    src = _pick(rng, others)
    o.builtinOptions, o.builtinOptionsType = copy.deepcopy(src.builtinOptions), src.builtinOptionsType
    return f"operator {i} options replaced by type {src.builtinOptionsType}"


def mut_op_io(m, rng):
    sg = _sg(m)
    i, o = _pick(rng, list(enumerate(sg.operators)))
    which = "inputs" if rng.random() < 0.6 else "outputs"
    lst = _lst(getattr(o, which))
    n = len(sg.tensors)
    kind = int(rng.integers(4))
    if kind <= 1 and lst:
        k = int(rng.integers(len(lst)))
        lst[k] = _pick(rng, [-1, n, n + 5, -2, 2 ** 31 - 1, int(rng.integers(n)), int(rng.integers(n))])
        what = f"{which}[{k}] -> {lst[k]}"
    elif kind == 2 and lst:
        lst.pop(int(rng.integers(len(lst))))
        what = f"{which} shortened"
    else:
        lst.append(_pick(rng, [-1, int(rng.integers(n))]))
        what = f"{which} extended"
    setattr(o, which, lst)
    return f"operator {i} {what}"


def mut_opcode(m, rng):
    kind = int(rng.integers(3))
    if kind == 0:
        i, o = _pick(rng, list(enumerate(_sg(m).operators)))
        o.opcodeIndex = _pick(rng, [len(m.operatorCodes), len(m.operatorCodes) + 3, 2 ** 31 - 1,
                                    int(rng.integers(len(m.operatorCodes)))])
        return f"operator {i} opcode_index -> {o.opcodeIndex}"
    k = int(rng.integers(len(m.operatorCodes)))
    oc = m.operatorCodes[k]
    if kind == 1:
        known = [3, 4, 9, 17, 22, 25, 28, 18, 40, 14, 34, 114, 6, 2, 1, 0, 19, 21, 101, 32, 150, 200]
        oc.builtinCode = _pick(rng, known)
        oc.deprecatedBuiltinCode = min(oc.builtinCode, 127)
        return f"opcode {k} -> builtin {oc.builtinCode}"
    oc.version = _pick(rng, [0, 1, 2, 3, 7, 100, -1])
    return f"opcode {k} version -> {oc.version}"


def mut_graph_io(m, rng):
    sg = _sg(m)
    which = "inputs" if rng.random() < 0.5 else "outputs"
    lst = _lst(getattr(sg, which))
    n = len(sg.tensors)
    kind = int(rng.integers(4))
    if kind == 0:
        lst = [int(rng.integers(n))]
    elif kind == 1:
        lst = lst + [int(rng.integers(n))]
    elif kind == 2:
        lst = []
    else:
        lst = [_pick(rng, [-1, n, n + 1])]
    setattr(sg, which, lst)
    return f"subgraph {which} -> {lst}"


def mut_structure(m, rng):
    sg = _sg(m)
    ops = sg.operators
    kind = int(rng.integers(5))
    if kind == 0 and len(ops) > 1:
        k = int(rng.integers(len(ops)))
        ops.pop(k)
        return f"operator {k} removed"
    if kind == 1:
        k = int(rng.integers(len(ops)))
        ops.insert(int(rng.integers(len(ops) + 1)), copy.deepcopy(ops[k]))
        return f"operator {k} duplicated"
    if kind == 2 and len(ops) > 1:
        a, b = (int(x) for x in rng.choice(len(ops), 2, replace=False))
        ops[a], ops[b] = ops[b], ops[a]
        return f"operators {a} and {b} swapped"
    if kind == 3:
        sg.operators = ops[::-1]
        return "operators reversed"
    extra = copy.deepcopy(sg)
    m.subgraphs.append(extra)
    return "second subgraph added"


def mut_buffer(m, rng):
    sg = _sg(m)
    with_data = [(i, t) for i, t in enumerate(sg.tensors) if 0 < t.buffer < len(m.buffers)
                 and m.buffers[t.buffer].data is not None]
    i, t = _pick(rng, with_data)
    buf = m.buffers[t.buffer]
    d = np.asarray(buf.data, np.uint8)
    kind = int(rng.integers(6))
    if kind == 0:
        buf.data = d[: int(rng.integers(len(d)))]
        return f"tensor {i} buffer truncated to {len(buf.data)} bytes"
    if kind == 1:
        buf.data = np.concatenate([d, rng.integers(0, 256, int(rng.integers(1, 9))).astype(np.uint8)])
        return f"tensor {i} buffer extended to {len(buf.data)} bytes"
    if kind == 2:
        t.buffer = _pick(rng, [0, len(m.buffers), len(m.buffers) + 7, int(rng.integers(len(m.buffers)))])
        return f"tensor {i} buffer index -> {t.buffer}"
    if kind == 3:  # extreme values: int8 weights at the rails, int32 biases near overflow
        if t.type == 2:  # INT32
            v = np.full(len(d) // 4, _pick(rng, [2 ** 31 - 1, -2 ** 31, 2 ** 30, -2 ** 30 - 7]), "<i4")
            buf.data = np.frombuffer(v.tobytes(), np.uint8).copy()
        else:
            buf.data = np.full(len(d), _pick(rng, [0x7F, 0x80, 0x81, 0x00, 0xFF]), np.uint8)
        return f"tensor {i} buffer set to extreme values"
    if kind == 4:
        d = d.copy()
        d[rng.integers(len(d), size=min(len(d), 8))] = rng.integers(0, 256, size=min(len(d), 8))
        buf.data = d
        return f"tensor {i} buffer bytes randomized"
    buf.data = None
    return f"tensor {i} buffer emptied"


def mut_tensor_flags(m, rng):
    i, t = _tensor(m, rng)
    kind = int(rng.integers(3))
    if kind == 0:
        t.isVariable = not t.isVariable
        return f"tensor {i} is_variable -> {t.isVariable}"
    if kind == 1:
        t.sparsity = _schema().SparsityParametersT()
        return f"tensor {i} sparsity added"
    t.name = _pick(rng, ["", "x" * 300, "in put/../ä", None])
    return f"tensor {i} name -> {t.name!r:.20}"


def _truncate_after(m, k):
    """Keep operators 0..k; the model's output becomes operator k's first output."""
    sg = _sg(m)
    sg.operators = sg.operators[: k + 1]
    sg.outputs = [int(_lst(sg.operators[k].outputs)[0])]


def mut_truncate(m, rng):
    """A prefix of the graph as the whole model: every op gets to be the last one (with the
    second edit of a two-edit mutant, the op under test)."""
    n = len(_sg(m).operators)
    if n < 2:
        raise Skip()
    k = int(rng.integers(n - 1))
    _truncate_after(m, k)
    return f"graph cut after operator {k}"


def _out_size(padding, size, k, stride, dil):
    eff = (k - 1) * dil + 1
    return (size + stride - 1) // stride if padding == 0 else (size + stride - eff) // stride


def mut_geometry(m, rng):
    """Another stride / padding / dilation / filter size on a conv, depthwise or pooling op, its
    output shape recomputed the TFLite way and the graph cut after it: a valid model with another
    geometry (the bit-exactness test of the kernels' edge cases)."""
    S = _schema()
    sg = _sg(m)
    codes = {i: max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode)) for i, oc in enumerate(m.operatorCodes)}
    kinds = {S.BuiltinOperator.CONV_2D, S.BuiltinOperator.DEPTHWISE_CONV_2D, S.BuiltinOperator.AVERAGE_POOL_2D,
             S.BuiltinOperator.MAX_POOL_2D}
    cands = [(i, o) for i, o in enumerate(sg.operators) if codes.get(o.opcodeIndex) in kinds and o.builtinOptions]
    i, o = _pick(rng, cands)
    opt = o.builtinOptions
    pool = codes[o.opcodeIndex] in (S.BuiltinOperator.AVERAGE_POOL_2D, S.BuiltinOperator.MAX_POOL_2D)
    opt.strideH, opt.strideW = (int(x) for x in rng.integers(1, 4, 2))
    opt.padding = int(rng.integers(2))
    if pool:
        opt.filterHeight, opt.filterWidth = (int(x) for x in rng.integers(1, 4, 2))
        kh, kw, dh, dw = opt.filterHeight, opt.filterWidth, 1, 1
    else:
        opt.dilationHFactor, opt.dilationWFactor = (int(x) for x in rng.integers(1, 3, 2))
        w = sg.tensors[int(_lst(o.inputs)[1])]
        kh, kw = int(w.shape[1]), int(w.shape[2])
        dh, dw = opt.dilationHFactor, opt.dilationWFactor
    inp = sg.tensors[int(_lst(o.inputs)[0])]
    out = sg.tensors[int(_lst(o.outputs)[0])]
    ih, iw = int(inp.shape[1]), int(inp.shape[2])
    oh = _out_size(opt.padding, ih, kh, opt.strideH, dh)
    ow = _out_size(opt.padding, iw, kw, opt.strideW, dw)
    if oh < 1 or ow < 1:
        raise Skip()
    shape = _lst(out.shape)
    out.shape = [shape[0], oh, ow, shape[3]]
    _truncate_after(m, i)
    return (f"operator {i} geometry: stride {opt.strideH}x{opt.strideW}, padding {opt.padding}, "
            f"{'filter' if pool else 'dilation'} {kh if pool else dh}x{kw if pool else dw}, output {out.shape}")


STRUCTURE_MUTATORS = [
    (mut_truncate, 2), (mut_geometry, 3),
    (mut_shape, 3), (mut_type, 2), (mut_scale, 3), (mut_zero_point, 3), (mut_quant_misc, 1.5), (mut_option, 5),
    (mut_options_type, 1), (mut_op_io, 3), (mut_opcode, 1.5), (mut_graph_io, 1), (mut_structure, 2),
    (mut_buffer, 3), (mut_tensor_flags, 1),
]


# --- mutation kinds added in the second campaign (issue 11 follow-up) -----------------------
_TYPE_CODES = {"FLOAT32": 0, "INT32": 2, "UINT8": 3, "INT64": 4, "INT16": 7, "INT8": 9, "FLOAT16": 1}
_NP_OF_CODE = {0: "<f4", 1: "<f2", 2: "<i4", 3: "u1", 4: "<i8", 7: "<i2", 9: "i1"}


def _consts(m):
    sg = _sg(m)
    return [(i, t) for i, t in enumerate(sg.tensors) if 0 < t.buffer < len(m.buffers)
            and m.buffers[t.buffer].data is not None and len(m.buffers[t.buffer].data)]


def _op_code(m, o):
    oc = m.operatorCodes[o.opcodeIndex]
    return max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))


def _weighted_ops(m):
    S = _schema()
    kinds = {S.BuiltinOperator.CONV_2D, S.BuiltinOperator.DEPTHWISE_CONV_2D, S.BuiltinOperator.FULLY_CONNECTED}
    return [(i, o) for i, o in enumerate(_sg(m).operators) if _op_code(m, o) in kinds and len(_lst(o.inputs)) >= 2]


def mut_axis_quant(m, rng):
    """Per-channel quantization on another axis (as many scales as that axis has elements), or a
    per-channel tensor collapsed to one scale: consistent in itself, wrong for the op."""
    sg = _sg(m)
    cands = [(i, t) for i, t in enumerate(sg.tensors) if t.quantization is not None and t.shape is not None
             and len(t.shape) and t.quantization.scale is not None and len(t.quantization.scale)]
    i, t = _pick(rng, cands)
    q, shape = t.quantization, _lst(t.shape)
    base = _lst(q.scale)
    zp = _lst(q.zeroPoint) or [0]
    if len(base) > 1 and rng.random() < 0.3:
        q.scale, q.zeroPoint, q.quantizedDimension = [float(max(base))], [int(zp[0])], 0
        return f"tensor {i} per-channel quantization collapsed to one scale"
    k = int(rng.integers(len(shape)))
    n = int(shape[k])
    if not 1 <= n <= 4096:
        raise Skip()
    q.scale = [float(base[j % len(base)]) * (1.0 + 0.25 * (j % 3)) for j in range(n)]
    q.zeroPoint = [int(zp[j % len(zp)]) for j in range(n)]
    q.quantizedDimension = k
    return f"tensor {i} quantized per channel on axis {k} ({n} scales)"


def mut_bias(m, rng):
    """The bias of a conv / depthwise / FC: scale off by a little or a lot, a zero point, another
    integer type (data re-encoded), absent (-1 or dropped), or one value per channel replaced by
    one per tensor."""
    sg = _sg(m)
    i, o = _pick(rng, _weighted_ops(m))
    ins = _lst(o.inputs)
    kind = int(rng.integers(6))
    if kind == 0:
        o.inputs = ins[:2] + [-1] if rng.random() < 0.5 else ins[:2]
        return f"operator {i} bias omitted ({'-1' if len(o.inputs) == 3 else 'two inputs'})"
    if len(ins) < 3 or ins[2] < 0:
        raise Skip()
    bi, bt = ins[2], sg.tensors[ins[2]]
    if kind == 1 and bt.quantization is not None and bt.quantization.scale is not None:
        f = _pick(rng, [1.01, 1.03, 0.97, 0.5, 2.0, 1e3, 1e-3])
        bt.quantization.scale = [float(s) * f for s in _lst(bt.quantization.scale)]
        return f"operator {i} bias tensor {bi} scale x{f}"
    if kind == 2 and bt.quantization is not None:
        bt.quantization.zeroPoint = [int(_pick(rng, [1, -1, 100, 2 ** 20]))] * max(1, len(_lst(bt.quantization.zeroPoint)))
        return f"operator {i} bias tensor {bi} zero point -> {bt.quantization.zeroPoint[0]}"
    if kind == 3 and bt.buffer < len(m.buffers) and m.buffers[bt.buffer].data is not None:
        old = np.frombuffer(np.asarray(m.buffers[bt.buffer].data, np.uint8).tobytes(), _NP_OF_CODE.get(bt.type, "<i4"))
        new = _pick(rng, [4, 7, 9, 0])  # INT64, INT16, INT8, FLOAT32
        m.buffers[bt.buffer].data = np.frombuffer(old.astype(_NP_OF_CODE[new]).tobytes(), np.uint8).copy()
        bt.type = new
        return f"operator {i} bias tensor {bi} retyped to {new} (data re-encoded)"
    if kind == 4 and bt.buffer < len(m.buffers) and m.buffers[bt.buffer].data is not None:
        old = np.frombuffer(np.asarray(m.buffers[bt.buffer].data, np.uint8).tobytes(), "<i4")
        if old.size < 2:
            raise Skip()
        m.buffers[bt.buffer].data = np.frombuffer(old[:1].tobytes(), np.uint8).copy()
        bt.shape = [1]
        if bt.quantization is not None and bt.quantization.scale is not None:
            bt.quantization.scale = _lst(bt.quantization.scale)[:1]
            bt.quantization.zeroPoint = _lst(bt.quantization.zeroPoint)[:1]
        return f"operator {i} bias tensor {bi} reduced to one value"
    bt.quantization = None
    return f"operator {i} bias tensor {bi} quantization removed"


def mut_retype_const(m, rng):
    """A constant tensor (weights, shape, paddings, axes) of another type, its data re-encoded so
    that the buffer size stays consistent (only the type is wrong)."""
    i, t = _pick(rng, _consts(m))
    src = _NP_OF_CODE.get(t.type)
    if src is None:
        raise Skip()
    old = np.frombuffer(np.asarray(m.buffers[t.buffer].data, np.uint8).tobytes(), src)
    new = _pick(rng, [c for c in _NP_OF_CODE if c != t.type])
    with np.errstate(all="ignore"):
        m.buffers[t.buffer].data = np.frombuffer(old.astype(_NP_OF_CODE[new]).tobytes(), np.uint8).copy()
    t.type = new
    return f"constant tensor {i} retyped {src} -> {_NP_OF_CODE[new]} (data re-encoded)"


def mut_custom(m, rng):
    """An unknown or custom operator: CUSTOM with a custom code, a builtin code beyond the enum,
    or custom options on a builtin op."""
    kind = int(rng.integers(3))
    if kind == 2:
        i, o = _pick(rng, list(enumerate(_sg(m).operators)))
        o.customOptions = [int(x) for x in rng.integers(0, 256, int(rng.integers(1, 24)))]
        o.customOptionsFormat = 0
        return f"operator {i} custom options on a builtin op"
    k = int(rng.integers(len(m.operatorCodes)))
    oc = m.operatorCodes[k]
    if kind == 0:
        oc.builtinCode, oc.deprecatedBuiltinCode = 32, 32
        oc.customCode = _pick(rng, ["TFLite_Detection_PostProcess", "", "ethos-u", "x" * 200, "conv\n2d"])
        return f"opcode {k} -> CUSTOM({oc.customCode[:20]!r})"
    oc.builtinCode = _pick(rng, [207, 255, 300, 1000, 2 ** 20, 2 ** 31 - 1, -5])
    oc.deprecatedBuiltinCode = 127
    return f"opcode {k} -> builtin {oc.builtinCode} (beyond the enum)"


def mut_signature(m, rng):
    """A signature def (as the converter writes them), with valid or invalid tensor and subgraph
    indices."""
    S = _schema()
    sg = _sg(m)
    n = len(sg.tensors)

    def tmap(name, tid):
        t = S.TensorMapT()
        t.name, t.tensorIndex = name, tid
        return t

    sd = S.SignatureDefT()
    sd.signatureKey = _pick(rng, ["serving_default", "", "x" * 100])
    bad = rng.random() < 0.5
    sd.subgraphIndex = _pick(rng, [1, 7, 2 ** 32 - 1]) if bad and rng.random() < 0.5 else 0
    gi, go = _lst(sg.inputs), _lst(sg.outputs)
    ins = [tmap(f"in{j}", t) for j, t in enumerate(gi)]
    outs = [tmap(f"out{j}", t) for j, t in enumerate(go)]
    if bad and (ins or outs):
        victim = _pick(rng, ins + outs)
        victim.tensorIndex = _pick(rng, [n, n + 10, 2 ** 32 - 1, 2 ** 31 - 1, int(rng.integers(n))])
    sd.inputs, sd.outputs = ins, outs
    m.signatureDefs = list(m.signatureDefs or []) + [sd]
    return f"signature def added (subgraph {sd.subgraphIndex}{', a bad tensor index' if bad else ''})"


def mut_shared_buffer(m, rng):
    """Tensors sharing a buffer: two constants of the same byte size (the converter deduplicates
    identical weights this way), or an activation pointed at a constant's buffer."""
    sg = _sg(m)
    consts = _consts(m)
    if rng.random() < 0.6:
        by_size = {}
        for i, t in consts:
            by_size.setdefault((len(m.buffers[t.buffer].data), t.type), []).append((i, t))
        groups = [g for g in by_size.values() if len({t.buffer for _, t in g}) > 1]
        g = _pick(rng, groups)
        (a, ta), (b, tb) = (g[int(j)] for j in rng.choice(len(g), 2, replace=False))
        tb.buffer = ta.buffer
        return f"tensor {b} shares tensor {a}'s buffer"
    acts = [(i, t) for i, t in enumerate(sg.tensors) if t.buffer == 0 or m.buffers[t.buffer].data is None]
    i, t = _pick(rng, acts)
    j, c = _pick(rng, consts)
    t.buffer = c.buffer
    return f"activation tensor {i} points at constant tensor {j}'s buffer"


def mut_external_buffer(m, rng):
    """A buffer stored by offset and size (the >2 GB layout) pointing inside or beyond the file."""
    i, t = _pick(rng, _consts(m))
    buf = m.buffers[t.buffer]
    size = len(buf.data)
    buf.data = None
    buf.offset = int(_pick(rng, [2, 8, 16, 64, 1 << 20, 2 ** 40]))
    buf.size = int(_pick(rng, [size, size + 1, 0, 2 ** 33]))
    return f"tensor {i} buffer stored externally at offset {buf.offset}, size {buf.size}"


def mut_huge_dims(m, rng):
    """Dimensions whose products overflow 32 (or 64) bits, or wrap to a small number."""
    i, t = _tensor(m, rng)
    shape = _lst(t.shape) or [1]
    pick = int(rng.integers(4))
    if pick == 0:
        shape = [1, 65536, 65536, 1][: max(2, len(shape))]
    elif pick == 1:
        shape = [2 ** 31 - 1] * len(shape)
    elif pick == 2:
        shape[int(rng.integers(len(shape)))] = 2 ** 32 // max(1, int(np.prod([max(d, 1) for d in shape]))) + 1
        shape = [int(np.clip(d, -2 ** 31, 2 ** 31 - 1)) for d in shape]
    else:
        shape = [1, 2 ** 16, 2 ** 16, 2 ** 16][: max(1, len(shape))]
    t.shape = shape
    return f"tensor {i} shape -> {shape}"


def mut_reshape(m, rng):
    """RESHAPE: the shape tensor's values, its length, or new_shape disagreeing with the output."""
    S = _schema()
    sg = _sg(m)
    cands = [(i, o) for i, o in enumerate(sg.operators) if _op_code(m, o) == S.BuiltinOperator.RESHAPE]
    i, o = _pick(rng, cands)
    ins = _lst(o.inputs)
    out_shape = _lst(sg.tensors[_lst(o.outputs)[0]].shape)
    new = list(out_shape)
    kind = int(rng.integers(4))
    if kind == 0:
        new = [-1] + new[1:]
    elif kind == 1:
        new = [int(rng.permutation(new)[0])] + new[1:] if new else [1]
        new = new[::-1]
    elif kind == 2:
        new = new + [1]
    else:
        new = [-1, -1] + new[2:]
    if len(ins) > 1 and ins[1] >= 0 and rng.random() < 0.7:
        st = sg.tensors[ins[1]]
        if not (0 < st.buffer < len(m.buffers)):
            raise Skip()
        m.buffers[st.buffer].data = np.frombuffer(np.asarray(new, "<i4").tobytes(), np.uint8).copy()
        st.shape = [len(new)]
        return f"operator {i} RESHAPE shape tensor -> {new} (output {out_shape})"
    if o.builtinOptions is None:
        o.builtinOptions, o.builtinOptionsType = S.ReshapeOptionsT(), S.BuiltinOptions.ReshapeOptions
    o.builtinOptions.newShape = new
    if rng.random() < 0.5:
        o.inputs = ins[:1]
    return f"operator {i} RESHAPE new_shape -> {new}{' (shape input dropped)' if len(_lst(o.inputs)) == 1 else ''} " \
           f"(output {out_shape})"


def mut_quant_details(m, rng):
    """Quantization tables the importer should notice: custom details, min/max only, a
    shape_signature with a dynamic dimension."""
    i, t = _tensor(m, rng)
    kind = int(rng.integers(3))
    if kind == 0:
        S = _schema()
        q = t.quantization or S.QuantizationParametersT()
        d = S.CustomQuantizationT()
        d.custom = [1, 2, 3]
        q.detailsType, q.details = S.QuantizationDetails.CustomQuantization, d
        t.quantization = q
        return f"tensor {i} custom quantization details"
    if kind == 1:
        q = _schema().QuantizationParametersT()
        q.min, q.max = [-1.0], [1.0]
        t.quantization = q
        return f"tensor {i} quantization with min/max only"
    shape = _lst(t.shape)
    if not shape:
        raise Skip()
    t.shapeSignature = [-1] + shape[1:]
    return f"tensor {i} shape_signature -> {t.shapeSignature}"


def mut_tables(m, rng):
    """Model-level tables: data in buffer 0 (the empty sentinel), no buffers at all, intermediate
    tensors on an operator, another schema version, metadata."""
    S = _schema()
    kind = int(rng.integers(5))
    if kind == 0:
        m.buffers[0].data = rng.integers(0, 256, int(rng.integers(1, 64))).astype(np.uint8)
        return f"buffer 0 holds {len(m.buffers[0].data)} bytes"
    if kind == 1:
        m.buffers = []
        return "buffers removed"
    if kind == 2:
        sg = _sg(m)
        i, o = _pick(rng, list(enumerate(sg.operators)))
        tid = int(rng.integers(len(sg.tensors)))
        o.intermediates = [tid]
        return f"operator {i} intermediates -> [{tid}]"
    if kind == 3:
        m.version = _pick(rng, [0, 1, 2, 4, 2 ** 32 - 1])
        return f"schema version -> {m.version}"
    md = S.MetadataT()
    md.name, md.buffer = _pick(rng, ["min_runtime_version", "x", ""]), _pick(rng, [0, len(m.buffers), 2 ** 32 - 1])
    m.metadata = list(m.metadata or []) + [md]
    return f"metadata '{md.name}' -> buffer {md.buffer}"


STRUCTURE_MUTATORS += [
    (mut_tables, 1), (mut_axis_quant, 1.5), (mut_bias, 2), (mut_retype_const, 1.5), (mut_custom, 1), (mut_signature, 1),
    (mut_shared_buffer, 1.5), (mut_external_buffer, 1), (mut_huge_dims, 1), (mut_reshape, 1),
    (mut_quant_details, 1),
]


def mutate_structure(data: bytes, rng, n_edits: int = 1):
    from tinycluster.importers.schema import read_model_t, write_model_t

    m = read_model_t(data)
    descs = []
    attempts = 0
    while len(descs) < n_edits and attempts < 50:
        attempts += 1
        fns, ws = zip(*STRUCTURE_MUTATORS)
        fn = fns[int(rng.choice(len(fns), p=np.asarray(ws) / sum(ws)))]
        try:
            descs.append(fn(m, rng))
        except Skip:
            continue
    return write_model_t(m), "; ".join(descs)


def mutate_bytes(data: bytes, rng):
    b = bytearray(data)
    kind = int(rng.integers(5))
    # half of the edits in the first 4 KiB or the last 4 KiB: the flatbuffer's tables and vtables
    # (the weights are the bulk of the file, and flips there only change values)
    def pos():
        r = rng.random()
        if r < 0.3:
            return int(rng.integers(min(len(b), 4096)))
        if r < 0.5:
            return max(0, len(b) - 1 - int(rng.integers(min(len(b), 4096))))
        return int(rng.integers(len(b)))

    if kind == 0:
        n = int(rng.integers(1, 9))
        for _ in range(n):
            p = pos()
            b[p] ^= 1 << int(rng.integers(8))
        return bytes(b), f"{n} bit flips"
    if kind == 1:
        n = int(rng.integers(1, 5))
        for _ in range(n):
            p = pos()
            b[p] = _pick(rng, [0x00, 0xFF, 0x7F, 0x80, int(rng.integers(256))])
        return bytes(b), f"{n} bytes overwritten"
    if kind == 2:
        n = int(rng.integers(8, len(b)))
        return bytes(b[:n]), f"truncated to {n} bytes"
    if kind == 3:
        p = pos()
        chunk = rng.integers(0, 256, int(rng.integers(1, 17))).astype(np.uint8).tobytes()
        return bytes(b[:p] + chunk + b[p:]), f"{len(chunk)} bytes inserted at {p}"
    p = pos()
    n = int(rng.integers(1, 17))
    return bytes(b[:p] + b[p + n:]), f"{n} bytes deleted at {p}"


def make_mutant(seeds: dict, rng):
    """(seed name, mutant bytes, description)."""
    names = sorted(seeds)
    w = np.asarray([seeds[n][1] for n in names], float)
    name = names[int(rng.choice(len(names), p=w / w.sum()))]
    data = seeds[name][0]
    r = rng.random()
    if r < 0.7:
        out, desc = mutate_structure(data, rng, n_edits=1 if rng.random() < 0.75 else 2)
    elif r < 0.95:
        out, desc = mutate_bytes(data, rng)
    else:
        out, d1 = mutate_structure(data, rng)
        out, d2 = mutate_bytes(out, rng)
        desc = f"{d1}; {d2}"
    return name, out, desc


# =============================================================================================
# workers: tinycluster's CLI and TFLite Micro, each in its own process
# =============================================================================================
def _job_cli(argv):
    """tinycluster's real command line in this process: (exit code, stdout, stderr)."""
    from tinycluster.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(list(argv))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def _job_tflm(path, arena=8 << 20):
    """Does TFLite Micro load and run the model? (True, "") or (False, reason)."""
    from tflite_micro.python.tflite_micro import runtime

    data = Path(path).read_bytes()
    try:
        interp = runtime.Interpreter.from_bytes(data, arena_size=arena)
        d = interp.get_input_details(0)
        shape = [int(x) for x in d["shape"]]
        x = np.zeros(shape, dtype=d["dtype"])
        interp.set_input(x, 0)
        interp.invoke()
        interp.get_output(0)
    except Exception as e:  # TFLM reports refusals as RuntimeError/ValueError
        return False, f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"[:300]
    return True, ""


JOBS = {"cli": _job_cli, "tflm": _job_tflm}


def _worker_main(conn, sys_path):
    sys.path[:0] = [p for p in sys_path if p not in sys.path]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    while True:
        try:
            kind, args = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        try:
            res = ("ok", JOBS[kind](*args))
        except BaseException:  # noqa: BLE001 - reported to the parent as a failure
            res = ("exception", traceback.format_exc()[-3000:])
        conn.send(res)


class Worker:
    """A process running jobs one at a time, killed and restarted on a hang or crash."""

    def __init__(self):
        self.p = None
        self.starts = 0

    def _start(self):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.p = ctx.Process(target=_worker_main, args=(child, [str(REPO), str(HERE)]), daemon=True)
        self.p.start()
        child.close()
        self.starts += 1

    def call(self, kind, *args, timeout):
        """("ok", result) | ("exception", text) | ("timeout", None) | ("crash", exit code)."""
        if self.p is None or not self.p.is_alive():
            self._start()
        self.conn.send((kind, args))
        if not self.conn.poll(timeout):
            self.stop()
            return "timeout", None
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            self.p.join(5)
            code = self.p.exitcode
            self.p = None
            return "crash", code

    def stop(self):
        if self.p is not None:
            self.p.kill()
            self.p.join(5)
            self.p = None


# =============================================================================================
# one mutant, start to end
# =============================================================================================
# text that belongs to a dependency's exception, never to a tinycluster message
LEAKS = re.compile(r"Traceback|internal error|\b[A-Z][A-Za-z]*(Error|Exception)\b|struct\.error|unpack_from|"
                   r"NaN to integer|object has no attribute|list index out of range|NoneType|invalid literal|"
                   r"index \d+ is out of bounds|requires a buffer|unsupported operand|not subscriptable|"
                   r"division by zero|overflow encountered|cannot convert|out of bounds for", re.I)
OK_KINDS = ("rejected", "accepted_verified")


def classify_error(code, out, err, path: Path, out_dir: Path) -> tuple:
    """("rejected", msg) or a failure kind and its detail, for a compile that did not succeed."""
    text = err.strip()
    # warnings the command documents (e.g. --calib-random's) may precede the one error line
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("warning: ")]
    leftovers = [p.name for p in out_dir.parent.iterdir() if p.name.startswith(f".{out_dir.name}.")]
    if out_dir.exists() or leftovers:
        return "half_written", f"output left behind after exit {code}: {out_dir.exists()}, {leftovers}"
    if code == 2 or "internal error" in text:
        return "internal_error", text[-1500:]
    if code != 1:
        return "bad_exit", f"exit {code}: {text[-1500:]}"
    if len(lines) != 1 or not lines[0].startswith("error: "):
        return "bad_error", text[-1500:]
    msg = lines[0]
    if path.name not in msg:
        return "bad_error", f"does not name the file: {msg}"
    m = LEAKS.search(msg)
    if m:
        return "bad_error", f"dependency text '{m.group(0)}': {msg}"
    return "rejected", msg


def standalone_build(out_dir: Path, timeout=120) -> tuple:
    """(ok, detail): the output folder alone, built with -Werror and its self-test run."""
    exe = out_dir.parent / (out_dir.name + ".selftest")
    cmd = ["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1",
           *map(str, sorted(out_dir.glob("*.c"))), *map(str, sorted((out_dir / "runtime").glob("*.c"))), "-o", str(exe)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            return False, "C build failed: " + r.stderr[-1500:]
        r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "stand-alone build or self-test timed out"
    finally:
        exe.unlink(missing_ok=True)
    if r.returncode != 0:
        return False, f"self-test exit {r.returncode}: {r.stdout[-500:]}{r.stderr[-500:]}"
    return True, r.stdout.strip()


class Campaign:
    """Runs mutants; ``results`` holds one dict per mutant."""

    def __init__(self, workdir: Path, time_limit: float = 120.0, verify_samples: int = 2, keep_failures: Path = None,
                 log=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.time_limit = time_limit
        self.verify_samples = verify_samples
        self.keep = keep_failures
        self.log = log or (lambda s: None)
        self.tc, self.tflm = Worker(), Worker()
        self.results = []
        self._verified = {}

    def close(self):
        self.tc.stop()
        self.tflm.stop()

    def run_one(self, idx: int, seed_name: str, data: bytes, desc: str, bits_args) -> dict:
        t0 = time.monotonic()
        path = self.workdir / f"m{idx:05d}.tflite"
        path.write_bytes(data)
        out = self.workdir / f"m{idx:05d}_out"
        res = {"index": idx, "seed": seed_name, "mutation": desc, "args": list(bits_args)}
        status, r = self.tc.call("cli", ["compile", str(path), "-o", str(out), "--quiet", *bits_args],
                                 timeout=self.time_limit)
        if status != "ok":
            res.update(kind={"timeout": "hang", "crash": "crash", "exception": "worker_exception"}[status],
                       detail=str(r)[-1500:])
        else:
            code, stdout, stderr = r
            if code != 0:
                res["kind"], res["detail"] = classify_error(code, stdout, stderr, path, out)
            else:
                self._accepted(res, out)
        res["seconds"] = round(time.monotonic() - t0, 2)
        if res["kind"] not in OK_KINDS and res["kind"] != "accepted_tflm_refuses" and self.keep is not None:
            self.keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, self.keep / f"{res['kind']}_{path.name}")
            (self.keep / f"{res['kind']}_{path.stem}.json").write_text(json.dumps(res, indent=2))
        path.unlink(missing_ok=True)
        shutil.rmtree(out, ignore_errors=True)
        self.results.append(res)
        self.log(f"[{idx}] {seed_name}: {desc} -> {res['kind']} ({res['seconds']} s)"
                 + (f": {res['detail'][:300]}" if res["kind"] not in OK_KINDS else ""))
        return res

    def _accepted(self, res, out: Path):
        rep = json.loads((out / "report.json").read_text())
        clustered = out / f"{rep['name']}_clustered.tflite"
        key = hashlib.sha256(clustered.read_bytes() + (out / f"{rep['name']}.c").read_bytes()).hexdigest()
        if key in self._verified:  # the same model and C as an earlier mutant: same verdict
            res["kind"], res["detail"] = self._verified[key], "same output as an earlier mutant"
            return
        status, r = self.tflm.call("tflm", str(clustered), timeout=self.time_limit)
        tflm_ok = status == "ok" and r[0]
        if not tflm_ok:
            ok, detail = standalone_build(out)
            why = f"TFLM {status}" + (f": {r[1]}" if status == "ok" else f" ({r})")
            res["kind"], res["detail"] = ("accepted_tflm_refuses", why) if ok else ("werror", f"{detail} [{why}]")
        else:
            status, r = self.tc.call("cli", ["verify", str(out), "--samples", str(self.verify_samples)],
                                     timeout=self.time_limit)
            if status != "ok":
                res["kind"], res["detail"] = {"timeout": "hang", "crash": "crash"}.get(status, "worker_exception"), \
                    f"verify: {str(r)[-1500:]}"
            else:
                code, stdout, stderr = r
                if code == 0 and " 0 mismatching outputs" in stdout:
                    res["kind"], res["detail"] = "accepted_verified", stdout.strip()
                elif "differ from TFLite Micro" in stderr:
                    res["kind"], res["detail"] = "mismatch", stderr.strip()[-1500:]
                elif "host C compile" in stderr:
                    res["kind"], res["detail"] = "werror", stderr.strip()[-1500:]
                else:
                    res["kind"], res["detail"] = "verify_failed", f"exit {code}: {stderr.strip()[-1500:]}"
        self._verified[key] = res["kind"]


BITS_CHOICES = [(["--bits", "8"], 4), (["--bits", "4"], 2), (["--bits", "3"], 1), (["--lossless"], 1),
                (["--clusters", "5"], 0.5)]
#: the other compile paths of an int8 model, one of them added to a quarter of the mutants: each
#: codebook layout, codebooks in flash, a board profile (its placement), and the calibrated
#: (output-error) path
EXTRA_CHOICES = [(["--granularity", "per-tensor"], 1), (["--granularity", "per-channel"], 1),
                 (["--granularity", "normalized"], 1), (["--codebooks", "flash"], 0.5),
                 (["--board", "cortex-m0plus"], 0.5), (["--calib-random", "3"], 1.5)]


def run_campaign(n: int, seed: int, workdir: Path, *, weights=None, time_limit: float = 120.0,
                 verify_samples: int = 2, keep_failures: Path = None, log=print) -> dict:
    """``n`` mutants from ``seed``; returns {"counts": {kind: n}, "failures": [...], "results": [...]}."""
    rng = np.random.default_rng(seed)
    seeds = seed_models(weights)
    camp = Campaign(workdir, time_limit=time_limit, verify_samples=verify_samples, keep_failures=keep_failures,
                    log=log)
    args, aw = zip(*BITS_CHOICES)
    extra, ew = zip(*EXTRA_CHOICES)
    t0 = time.monotonic()
    try:
        for i in range(n):
            name, data, desc = make_mutant(seeds, rng)
            a = list(args[int(rng.choice(len(args), p=np.asarray(aw) / sum(aw)))])
            if rng.random() < 0.25:
                a += extra[int(rng.choice(len(extra), p=np.asarray(ew) / sum(ew)))]
            camp.run_one(i, name, data, desc, a)
    finally:
        camp.close()
    counts = {}
    for r in camp.results:
        counts[r["kind"]] = counts.get(r["kind"], 0) + 1
    failures = [r for r in camp.results if r["kind"] not in OK_KINDS]
    return {"seed": seed, "mutants": n, "seconds": round(time.monotonic() - t0, 1), "counts": counts,
            "failures": failures, "results": camp.results,
            "worker_starts": {"tinycluster": camp.tc.starts, "tflm": camp.tflm.starts}}
