"""Write ``<name>_clustered.tflite``: the original model with every clustered weight tensor's
buffer replaced by its codebook values (``Clustering.values()``), every other constant the
compression passes rewrote (int32 biases requantized or corrected) replaced by its new data,
and every weight tensor whose scales a layout changed (``graph.meta["source_quant"]``) carrying
its new per-channel scales, so that any TFLite runtime runs exactly what the generated C runs.

Method: the file is copied byte for byte and each changed buffer and scale vector is
overwritten in place: a rewritten tensor keeps its shape and dtype and a rescaled per-channel
tensor its number of scales, so every size and offset in the flatbuffer stays valid and nothing
else in the file changes (8-bit clustering of an int8 model therefore rewrites an identical
file). The position of a vector is found through the ``tflite`` schema package (the start of the
``Buffer.data`` or ``QuantizationParameters.scale`` vector), or, for buffers stored after the
flatbuffer (models > 2 GB: ``Buffer.offset``/``size``), from those fields. A per-tensor weight
that becomes per-channel needs longer vectors: then the model is rewritten through the schema's
object API (:mod:`tinycluster.importers.schema`), as is a model whose rewritten tensor shares its
buffer with a tensor that keeps other values (the converter deduplicates identical constants):
that tensor gets a buffer of its own; and a model with buffers stored by offset and size (after the
flatbuffer, the layout of models over 2 GB): the clustered model holds their bytes inline, the
layout TFLite Micro reads (the installed interpreter does not read offset/size buffers).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import TinyClusterError


def _buffer_location(model, bi: int, nbytes_file: int):
    """(byte offset, byte length) of buffer ``bi``'s data inside the file, or None if empty."""
    buf = model.Buffers(bi)
    off, size = int(buf.Offset()), int(buf.Size())
    if off > 1:
        if off + size > nbytes_file:
            raise TinyClusterError(f"buffer {bi} lies beyond the end of the file")
        return off, size
    o = buf._tab.Offset(4)
    if o == 0:
        return None
    start = buf._tab.Vector(o)
    length = buf._tab.VectorLen(o)
    return start, length


def _vector_location(table, field_offset: int):
    """(byte offset, element count) of a vector field of a flatbuffer table, or None."""
    o = table._tab.Offset(field_offset)
    if o == 0:
        return None
    return table._tab.Vector(o), table._tab.VectorLen(o)


_Q_SCALE, _Q_ZERO_POINT = 8, 10  # QuantizationParameters field offsets (schema.fbs: scale, zero_point)


def _new_constants(graph):
    """[(tensor, new bytes)] of every constant whose stored bytes may change: clustered weights
    (their codebook values) and the constants a pass rewrote (``graph.meta["rewritten"]``: tensor
    ids, e.g. requantized or corrected int32 biases)."""
    out = []
    rewritten = set(graph.meta.get("rewritten", ()))
    for t in graph.tensors:
        if t.data is None or (t.clustering is None and t.id not in rewritten):
            continue
        if t.clustering is not None:
            if t.data.dtype != np.int8:
                raise TinyClusterError(f"tensor '{t.name}' (id {t.id}) is not an int8 constant; cannot write "
                                       "clustered values")
            out.append((t, np.ascontiguousarray(t.clustering.values().astype(np.int8).reshape(t.data.shape))))
        else:
            out.append((t, np.ascontiguousarray(t.data)))
    return out


def clustered_model_bytes(graph, source_bytes: bytes = None) -> bytes:
    """The bytes of the clustered model (see module docstring)."""
    import tflite

    src = Path(graph.source) if graph.source else None
    if source_bytes is None:
        if src is None or not src.exists():
            raise TinyClusterError(f"cannot write the clustered .tflite: the source model '{graph.source}' "
                                   "is gone (it is re-read to copy everything but the weights)")
        source_bytes = src.read_bytes()
    data = bytearray(source_bytes)
    if data[4:8] != b"TFL3":
        raise TinyClusterError(f"{graph.source}: not a TFLite flatbuffer; cannot write a clustered copy")
    model = tflite.Model.GetRootAsModel(bytes(data), 0)
    n_buf = model.BuffersLength()

    # every tensor of the main subgraph that refers to each buffer (buffers can be shared)
    users = {}
    for t in graph.tensors:
        if t.buffer_index is not None and t.buffer_index > 0:
            users.setdefault(t.buffer_index, []).append(t)

    sg = model.Subgraphs(0)
    requant = graph.meta.get("source_quant", {})
    # buffers stored by offset and size (after the flatbuffer, as the converter writes models over
    # 2 GB): the clustered model holds them inline. The installed TFLite Micro does not read such
    # buffers (it ran a model with them on other weights than LiteRT), an in-place write could land
    # on the tables when the offset points into them, and the object API drops the bytes after the
    # flatbuffer
    in_place = not any(int(model.Buffers(bi).Offset()) > 1 for bi in range(n_buf) if model.Buffers(bi) is not None)
    for tid in requant:
        t = graph.tensors[tid]
        fq = sg.Tensors(tid).Quantization()
        loc = None if fq is None else _vector_location(fq, _Q_SCALE)
        zl = None if fq is None else _vector_location(fq, _Q_ZERO_POINT)
        if loc is None or loc[1] != t.quant.scale.size or zl is None or zl[1] != t.quant.scale.size \
                or int(fq.QuantizedDimension()) != int(t.quant.axis):
            in_place = False
    writes = []  # (tensor, bytes)
    for t, new in _new_constants(graph):
        bi = t.buffer_index
        where = f"{Path(str(graph.source or graph.name)).name}: tensor {t.id} ('{t.name}')"
        if bi is None or not 0 < bi < n_buf:
            if t.clustering is not None:
                raise TinyClusterError(f"{where} has no buffer in {graph.source}; cannot write its clustered values")
            continue
        loc = _buffer_location(model, bi, len(data))
        raw = new.tobytes()
        if loc is not None and loc[1] == len(raw) and bytes(data[loc[0]:loc[0] + loc[1]]) == raw:
            continue  # unchanged
        if loc is None or loc[1] != len(raw):
            raise TinyClusterError(f"{where}: buffer {bi} holds {0 if loc is None else loc[1]} bytes, "
                                   f"expected {len(raw)}; the graph no longer matches {graph.source}")
        # a buffer shared with a tensor that keeps other values (the converter deduplicates
        # identical constants): this tensor gets a buffer of its own in the clustered model
        own = any(other.id != t.id and np.asarray(other.clustering.values() if other.clustering is not None
                                                  else other.data).astype(other.data.dtype).tobytes() != raw
                  for other in users.get(bi, []) if other.data is not None)
        if own:
            in_place = False
        writes.append((t, bi if not own else None, loc, raw))
    if not in_place:
        return _rewrite_object_api(graph, bytes(source_bytes), writes, requant)
    for t, _, (start, length), raw in writes:
        data[start:start + length] = raw
    for tid in requant:
        t = graph.tensors[tid]
        fq = sg.Tensors(tid).Quantization()
        start, n = _vector_location(fq, _Q_SCALE)
        data[start:start + 4 * n] = np.asarray(t.quant.scale, dtype="<f4").tobytes()
        start, n = _vector_location(fq, _Q_ZERO_POINT)
        data[start:start + 8 * n] = np.asarray(t.quant.zero_point, dtype="<i8").tobytes()
    return bytes(data)


def _rewrite_object_api(graph, source: bytes, writes, requant) -> bytes:
    """The clustered model through the schema's object API (new scale vector lengths)."""
    from ..importers.schema import read_model_t, schema, write_model_t

    m = read_model_t(source, str(graph.source))
    sg = m.subgraphs[0]
    S = schema()
    for b in m.buffers or []:
        if int(b.offset or 0) > 1:
            b.data = np.frombuffer(source[int(b.offset):int(b.offset) + int(b.size)], dtype=np.uint8).copy()
        if int(b.offset or 0) > 0:
            b.offset, b.size = 0, 0
    for t, bi, _, raw in writes:
        if bi is None:  # its own buffer (it shared one with a tensor that keeps other values)
            b = S.BufferT()
            m.buffers.append(b)
            sg.tensors[t.id].buffer = len(m.buffers) - 1
        else:
            b = m.buffers[bi]
        b.data = np.frombuffer(raw, dtype=np.uint8).copy()
    for tid in requant:
        t = graph.tensors[tid]
        q = sg.tensors[tid].quantization
        q.scale = [float(v) for v in np.asarray(t.quant.scale, dtype=np.float32)]
        q.zeroPoint = [int(v) for v in np.asarray(t.quant.zero_point)]
        q.quantizedDimension = int(t.quant.axis)
    return write_model_t(m)


def write_clustered_tflite(source, graph, out_path=None) -> bytes:
    """The clustered model's bytes; also written (atomically) to ``out_path`` when given.

    source: the original model as bytes, or a path, or None for ``graph.source`` (the file
    :func:`tinycluster.importers.tflite.load_tflite` read the graph from)."""
    if source is None or isinstance(source, (str, os.PathLike)):
        p = Path(source) if source is not None else (Path(graph.source) if graph.source else None)
        if p is None or not p.is_file():
            raise TinyClusterError(f"cannot write the clustered .tflite: the source model '{p}' is gone "
                                   "(it is re-read to copy everything but the weights)")
        source = p.read_bytes()
    payload = clustered_model_bytes(graph, bytes(source))
    if out_path is not None:
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=out_path.name + ".", suffix=".tmp", dir=str(out_path.parent))
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            os.replace(tmp, out_path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return payload
