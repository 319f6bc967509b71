"""TFLite Micro's own LUT compressor (the peer), run on tinycluster's clustered models.

``tflite_micro`` (a core dependency) ships ``tensorflow/lite/micro/compression/compress.py``:
given a spec naming tensors, it rewrites each as bit-packed indices plus value tables and inserts
a ``TFLM_DECODE`` operator in front of each consumer; the interpreter decodes the tensor into the
arena before the consumer runs. Measured here, on the ``<name>_clustered.tflite`` that
``tinycluster compile`` writes (the very weights our C holds):

``as_user``
    What a user gets by following the tool's documentation: one LUT spec per weight tensor
    (per channel along the op's channel axis, at the smallest index width that holds each
    channel's distinct values), ``compress()``, then the PyPI interpreter.

``fixed``
    The same after the two work-arounds found here (see :func:`diagnose`):
    1. *operator codes*: models written by older converters (kws and ad01 among the shared ones)
       keep the operator in ``deprecated_builtin_code`` only; TFLite reads
       ``max(builtin_code, deprecated_builtin_code)``, but the compressor's model editor keys its
       operator-code table on ``builtin_code`` alone (0 for all of them), so every builtin operator
       collapses onto one entry, the last one read (SOFTMAX in kws): the first CONV_2D is then
       prepared as a SOFTMAX with three inputs and allocation fails. Fix: copy the code into
       ``builtin_code`` first (:func:`normalize_operator_codes`);
    2. *per-channel tables on a per-tensor-quantized tensor*: the DECODE kernel takes its channel
       count from the tensor's quantization (number of scales), not from the spec's axis; for a
       tensor with one scale (kws' FULLY_CONNECTED weights) it applies the first channel's table to
       the whole tensor and the outputs change. Fix: a per-tensor table where the tensor has one
       scale;
    and tensors whose LUT form is larger than their int8 bytes are left alone (the compressor only
    warns about them).

For each: the .tflite size, whether TFLite Micro runs it, whether its outputs equal the clustered
model's on the same inputs (they must: LUT compression is lossless), and TFLite Micro's arena
(the DECODE outputs live there at run time).
"""
from __future__ import annotations

import contextlib
import importlib
import io
import math
import warnings

import numpy as np

LUT_MAX_BITS = 7  # the DECODE metadata's bit-width field


def _compress_module():
    return importlib.import_module("tflite_micro.tensorflow.lite.micro.compression.compress")


def _spec():
    from tflite_micro.tensorflow.lite.micro.compression import spec

    return spec


def weight_tensors(tfl: bytes):
    """[(tensor index, int8 values, channel axis, number of quantization scales)] of the model's
    weight tensors (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED), via tinycluster's importer."""
    import tempfile
    from pathlib import Path

    from tinycluster.importers.tflite import load_tflite
    from tinycluster.ops import get_handler

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.tflite"
        p.write_bytes(tfl)
        g = load_tflite(p)
    out, seen = [], set()
    for node, t in g.weight_tensors():
        if t.id in seen or t.data is None or t.data.dtype != np.int8:
            continue
        seen.add(t.id)
        ax = get_handler(node.op).weight_channel_axis
        ax = None if ax is None else ax % t.data.ndim
        n_scales = int(np.asarray(t.quant.scale).size) if t.quant is not None else 1
        out.append((t.id, t.data, ax, n_scales))
    return out


def _width(n_values: int) -> int:
    return max(1, int(math.ceil(math.log2(max(n_values, 2)))))


def lut_specs(tfl: bytes, fixed: bool):
    """The compression spec: per tensor, per-channel LUT at the smallest width (``fixed``: per-tensor
    where the tensor has one quantization scale, and no entry where the LUT form would not be smaller
    than the int8 tensor). Returns (specs, rows) with one row per weight tensor for the report."""
    spec = _spec()
    specs, rows = [], []
    for tid, v, ax, n_scales in weight_tensors(tfl):
        per_channel = ax is not None and ax in (0, v.ndim - 1) and not (fixed and n_scales == 1)
        if per_channel:
            chans = np.moveaxis(v, ax, 0).reshape(v.shape[ax], -1)
            n_tables, table = chans.shape[0], max(np.unique(c).size for c in chans)
        else:
            n_tables, table = 1, int(np.unique(v).size)
        bits = _width(table)
        size = (v.size * bits + 7) // 8 + 16 + n_tables * table  # indices + DECODE metadata + tables
        row = {"tensor": int(tid), "shape": list(v.shape), "int8_bytes": int(v.size), "bits": bits,
               "mode": "per-channel" if per_channel else "per-tensor", "lut_bytes": int(size)}
        if bits > LUT_MAX_BITS:
            row["skipped"] = f"needs {bits} bits (> {LUT_MAX_BITS})"
        elif fixed and size >= v.size:
            row["skipped"] = "LUT form not smaller than int8"
        else:
            mode = spec.PerChannel(axis=int(ax)) if per_channel else spec.PerTensor()
            specs.append(spec.Tensor(subgraph=0, tensor=int(tid),
                                     compression=[spec.LookUpTableCompression(index_bitwidth=bits, mode=mode)]))
        rows.append(row)
    return specs, rows


def normalize_operator_codes(tfl: bytes) -> bytes:
    """``builtin_code = max(builtin_code, deprecated_builtin_code)`` in every operator code (what
    TFLite itself reads), so that the compressor's editor tells the operators apart."""
    from tinycluster.importers.schema import read_model_t, write_model_t

    m = read_model_t(tfl)
    for oc in m.operatorCodes:
        oc.builtinCode = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
    return write_model_t(m)


def collapsed_operator_codes(tfl: bytes) -> bool:
    """True when two operator codes differ only in ``deprecated_builtin_code`` (the compressor merges them)."""
    from tinycluster.importers.schema import read_model_t

    m = read_model_t(tfl)
    keys = [(int(oc.builtinCode), oc.customCode) for oc in m.operatorCodes]
    return len(set(keys)) < len(keys)


def compress(tfl: bytes, specs) -> tuple:
    """(compressed bytes, the compressor's warnings); stderr chatter swallowed."""
    with warnings.catch_warnings(record=True) as w, contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("always")
        out = bytes(_compress_module().compress(tfl, specs))
    return out, [str(x.message).split(" (encoded")[0] for x in w]


def run_tflm(tfl: bytes, xs) -> tuple:
    """(raw outputs [N, n_out] or None, error line or None) under the PyPI TFLite Micro interpreter.
    The interpreter prints its prepare errors on the C stdout/stderr; they are captured."""
    import os
    import sys
    import tempfile

    from tflite_micro.python.tflite_micro import runtime

    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as f:
        saved = [os.dup(1), os.dup(2)]
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        err = None
        ys = None
        try:
            it = runtime.Interpreter.from_bytes(tfl, arena_size=8 << 20)
            shape = tuple(int(d) for d in it.get_input_details(0)["shape"])
            ys = []
            for x in xs:
                it.set_input(np.asarray(x).reshape(shape), 0)
                it.invoke()
                ys.append(np.array(it.get_output(0)).reshape(-1))
            ys = np.stack(ys)
        except Exception as e:  # RuntimeError from allocation/prepare/invoke
            err = f"{type(e).__name__}: {e}"
        finally:
            for fd, s in zip((1, 2), saved):
                os.dup2(s, fd)
                os.close(s)
        f.seek(0)
        log = f.read().decode(errors="replace").strip().splitlines()
    if err is not None:
        detail = [ln for ln in log if ln.strip()][:2]
        return None, "; ".join(detail + [err])
    return ys, None


def size_breakdown(tfl: bytes) -> dict:
    """File size, bytes held in buffers (weights, biases, LUT indices and tables) and the rest
    (graph, tensor tables, names, quantization vectors, alignment)."""
    import tflite

    m = tflite.Model.GetRootAsModel(tfl, 0)
    data = sum(m.Buffers(i).DataLength() for i in range(m.BuffersLength()))
    sg = m.Subgraphs(0)
    names = sum(len(sg.Tensors(i).Name() or b"") for i in range(sg.TensorsLength()))
    quant = 0
    for i in range(sg.TensorsLength()):
        q = sg.Tensors(i).Quantization()
        if q is not None:
            quant += 4 * q.ScaleLength() + 8 * q.ZeroPointLength()
    return {"bytes": len(tfl), "buffer_bytes": int(data), "other_bytes": len(tfl) - int(data),
            "tensor_name_bytes": int(names), "quantization_bytes": int(quant),
            "n_tensors": sg.TensorsLength(), "n_operators": sg.OperatorsLength()}


def measure(clustered: bytes, xs) -> dict:
    """Both variants on one clustered model (module docstring); ``xs``: inputs in the model's dtype."""
    from tinycluster.verify import tflm_arena_sizes

    y_ref, err = run_tflm(clustered, xs)
    assert err is None, err
    res = {"clustered": size_breakdown(clustered), "clustered_arena": tflm_arena_sizes(clustered),
           "operator_codes_collapse": collapsed_operator_codes(clustered)}
    for variant in ("as_user", "fixed"):
        src = normalize_operator_codes(clustered) if variant == "fixed" else clustered
        specs, rows = lut_specs(src, fixed=variant == "fixed")
        r = {"tensors": rows, "compressed_tensors": len(specs)}
        try:
            out, warns = compress(src, specs)
        except Exception as e:
            r.update(error=f"compress failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            res[variant] = r
            continue
        r.update(size_breakdown(out))
        r["warnings"] = warns
        ys, err = run_tflm(out, xs)
        r["runs"] = err is None
        r["tflm_error"] = err
        if ys is not None:
            r["outputs_identical"] = bool(np.array_equal(ys, y_ref))
            r["max_abs_diff"] = int(np.abs(ys.astype(np.int64) - y_ref.astype(np.int64)).max())
            r["arena"] = tflm_arena_sizes(out)
        res[variant] = r
    return res


def diagnose(clustered: bytes, xs) -> list:
    """Which single tensor's LUT (on the operator-code-normalized model) changes the outputs:
    [(tensor index, mode, quantization scales)] — the evidence for work-around 2."""
    base = normalize_operator_codes(clustered)
    y_ref, _ = run_tflm(base, xs)
    specs, _ = lut_specs(base, fixed=False)
    scales = {tid: n for tid, _, _, n in weight_tensors(base)}
    bad = []
    for s in specs:
        out, _ = compress(base, [s])
        ys, err = run_tflm(out, xs)
        if err is not None or not np.array_equal(ys, y_ref):
            bad.append((s.tensor, type(s.compression[0].mode).__name__, scales[s.tensor]))
    return bad
