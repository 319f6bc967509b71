"""Write ``<name>_clustered.tflite``: the original model with every clustered weight tensor's
buffer replaced by its codebook values (``Clustering.values()``), so that any TFLite runtime
runs exactly the weights the generated C runs.

Method: the file is copied byte for byte and each clustered buffer is overwritten in place.
A clustered int8 tensor has the same shape and dtype as the original, so every size and
offset in the flatbuffer stays valid and nothing else in the file changes (8-bit clustering
of an int8 model therefore rewrites an identical file). The position of a buffer's data is
found through the ``tflite`` schema package (the start of the ``Buffer.data`` vector), or,
for buffers stored after the flatbuffer (models > 2 GB: ``Buffer.offset``/``size``), from
those fields.
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

    for t in graph.tensors:
        cl = t.clustering
        if cl is None:
            continue
        bi = t.buffer_index
        where = f"tensor '{t.name}' (id {t.id})"
        if bi is None or not 0 < bi < n_buf:
            raise TinyClusterError(f"{where} has no buffer in {graph.source}; cannot write its clustered values")
        if t.data is None or t.data.dtype != np.int8:
            raise TinyClusterError(f"{where} is not an int8 constant; cannot write clustered values")
        new = np.ascontiguousarray(cl.values().astype(np.int8).reshape(t.data.shape))
        for other in users.get(bi, []):
            if other.id != t.id and (other.clustering is None
                                     or not np.array_equal(other.clustering.values(), new)):
                raise TinyClusterError(f"{where} shares buffer {bi} with tensor '{other.name}', which is "
                                       "clustered differently; the clustered .tflite cannot hold both")
        loc = _buffer_location(model, bi, len(data))
        raw = new.tobytes()
        if loc is None or loc[1] != len(raw):
            raise TinyClusterError(f"{where}: buffer {bi} holds {0 if loc is None else loc[1]} bytes, "
                                   f"expected {len(raw)}; the graph no longer matches {graph.source}")
        start, length = loc
        data[start:start + length] = raw
    return bytes(data)


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
