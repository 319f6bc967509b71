"""INT4 codebook values (``--weight-dtype int4``): rewrite a converted model so that every weight
channel's int8 values lie in the int4 range [-8, 7].

The clustering step put each channel's float centroids on a grid ``s4 * q`` with integer
``q`` in [-8, 7]. The TFLite converter quantizes a channel with ``s = max|w| / 127``, which
stores ``round(127 * q / m)`` (``m = max|q|`` of the channel). This pass recovers ``q`` and
stores the channel exactly as ``q`` with scale ``s' = s * 127 / m`` (= ``s4``): the real weight
values are the float centroids themselves, and the int8 codebook entries fit in 4 bits. The
bias of the layer (int32, scale ``s_in * s``) is requantized to the new scale
``round(b * s / s')`` and its scale field updated. Everything is an in-place edit of the
flatbuffer (same sizes), so the file layout does not change; the result is an ordinary int8
model that TFLite Micro runs, and the C is bit-exact with it as with any other.
"""
from __future__ import annotations

import numpy as np

from ..errors import TinyClusterError

_WEIGHTED = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


def _op_names():
    import tflite

    return {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}


def _recover_q(w8: np.ndarray):
    """(q, m) with round(127 q / m) == w8 and q in [-8, 7], smallest m; None if no such grid."""
    w = w8.astype(np.float64)
    if not np.any(w):
        return np.zeros_like(w8, dtype=np.int8), 1
    for m in range(1, 9):
        q = np.round(w * m / 127.0)
        if q.min() < -8 or q.max() > 7:
            continue
        if np.all(np.abs(w - q * 127.0 / m) <= 0.5 + 1e-9):
            return q.astype(np.int8), m
    return None


def rewrite_int4_codebooks(model_bytes: bytes):
    """Return (new model bytes, info) with every weight channel stored as int4-range values."""
    import tflite

    buf = bytearray(model_bytes)
    m = tflite.Model.GetRootAsModel(buf, 0)
    names = _op_names()
    done = set()
    layers = []
    for si in range(m.SubgraphsLength()):
        sg = m.Subgraphs(si)
        for oi in range(sg.OperatorsLength()):
            op = sg.Operators(oi)
            code = m.OperatorCodes(op.OpcodeIndex())
            name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "")
            if name not in _WEIGHTED:
                continue
            ins = op.InputsAsNumpy()
            wt = sg.Tensors(int(ins[1]))
            if int(ins[1]) in done:
                continue
            wq = wt.Quantization()
            wbuf = m.Buffers(wt.Buffer())
            if wq is None or wbuf.DataLength() == 0 or wt.Type() != tflite.TensorType.INT8:
                continue
            w = wbuf.DataAsNumpy().view(np.int8)  # writable view into buf
            shape = tuple(wt.ShapeAsNumpy())
            w = w.reshape(shape)
            ws = wq.ScaleAsNumpy()  # writable view
            axis = wq.QuantizedDimension() if ws.size > 1 else None
            n_ch = ws.size
            wv = np.moveaxis(w, axis, 0) if axis is not None else w[None]
            bias_t = sg.Tensors(int(ins[2])) if len(ins) > 2 and ins[2] >= 0 else None
            b = bs = None
            if bias_t is not None and m.Buffers(bias_t.Buffer()).DataLength() > 0:
                b = m.Buffers(bias_t.Buffer()).DataAsNumpy().view(np.int32)
                bs = bias_t.Quantization().ScaleAsNumpy() if bias_t.Quantization() is not None else None
            new_q = []
            ok = True
            for c in range(n_ch):
                r = _recover_q(np.asarray(wv[c]))
                if r is None:
                    ok = False
                    break
                new_q.append(r)
            if not ok:
                raise TinyClusterError(
                    f"operator {oi} ({name}): weights are not on an int4 grid; --weight-dtype int4 needs the "
                    "front end's int4 clustering (at most 16 clusters)")
            factors = np.array([127.0 / mm for _, mm in new_q])  # s' = s * factor
            for c, (q, _) in enumerate(new_q):
                wv[c][...] = q
            old_scales = ws.astype(np.float64).copy()
            new_scales = (old_scales * factors).astype(np.float32)
            ws[:] = new_scales
            if b is not None:
                f = factors if b.size == n_ch else np.full(b.size, factors[0])
                nb = np.round(b.astype(np.float64) / f)
                b[:] = np.clip(nb, -2 ** 31, 2 ** 31 - 1).astype(np.int32)
                if bs is not None and bs.size == b.size:
                    bs[:] = (bs.astype(np.float64) * f).astype(np.float32)
            done.add(int(ins[1]))
            layers.append({"op": oi, "type": name, "channels": int(n_ch),
                           "codebook_range": [int(w.min()), int(w.max())]})
    return bytes(buf), {"layers": layers}
