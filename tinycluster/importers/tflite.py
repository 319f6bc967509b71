"""Import a full-integer int8 ``.tflite`` model into the graph IR (:mod:`tinycluster.ir`).

The flatbuffer is read with the maintained ``tflite`` schema package (generated from
TensorFlow's ``schema.fbs``); nothing here parses bytes by hand except the file-identifier
check. Every problem with the input becomes a one-line :class:`TinyClusterError` naming
the file (and the operator or tensor when there is one): the flatbuffers runtime has no
verifier, so all reads of the file happen inside one guard that turns ``struct.error``,
``IndexError`` and friends from a truncated or corrupted file into such an error.

Two entry points:

``load_tflite(path) -> Graph``
    tensors (shape, dtype, quantization, constant data), nodes (op name, inputs with -1
    for absent optional inputs, attrs from each op handler's ``parse``).
``resolve_graph(graph)``
    runs each op handler's ``resolve`` (shape/quantization checks, integer params).
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import TinyClusterError, UnsupportedOpError
from ..ir import Graph, Node, QuantParams, Tensor

FILE_IDENTIFIER = b"TFL3"

# TensorType enum value -> numpy dtype name (None: a type tinycluster cannot hold as numpy data)
_TENSOR_TYPES = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
    7: "int16", 8: "complex64", 9: "int8", 10: "float64", 11: "complex128", 12: "uint64",
    13: "resource", 14: "variant", 15: "uint32", 16: "uint16", 17: "int4", 18: "bfloat16",
}
_NUMPY_TYPES = {"float32", "float16", "int32", "uint8", "int64", "bool", "int16", "complex64",
                "int8", "float64", "complex128", "uint64", "uint32", "uint16"}

#: ops that convert between the int8 activations and the model's external types; only their
#: outer side may be float / uint8 / int16 in a model tinycluster accepts
_BOUNDARY_OPS = ("QUANTIZE", "DEQUANTIZE")


def _opcode_names():
    import tflite

    return {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}


def _options_classes(enum_cls):
    """Union type value -> options class of the tflite package (e.g. 1 -> tflite.Conv2DOptions)."""
    import tflite

    table = {}
    for name, value in vars(enum_cls).items():
        if name.startswith("_") or name == "NONE" or not isinstance(value, int):
            continue
        cls = getattr(tflite, name, None)
        if isinstance(cls, type):
            table[value] = cls
    return table


def _err(path: Path, msg: str) -> TinyClusterError:
    return TinyClusterError(f"{path.name}: {msg}")


def _read_file(path) -> tuple:
    path = Path(path)
    if not path.exists():
        raise TinyClusterError(f"{path}: no such file (give the path of an int8 .tflite model)")
    if path.is_dir():
        raise TinyClusterError(f"{path}: is a directory, not a .tflite model file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TinyClusterError(f"{path}: cannot read the file ({e.strerror or e})") from None
    if len(data) < 8:
        raise _err(path, f"not a TFLite model (only {len(data)} bytes; the file is empty or truncated)")
    if data[4:8] != FILE_IDENTIFIER:
        raise _err(path, "not a TFLite model (no 'TFL3' flatbuffer identifier at byte 4; "
                         "is it a Keras .h5/.keras file, a SavedModel, or a corrupted/truncated download?)")
    return path, data


def read_model(path) -> tuple:
    """(path, parsed model dict) of a .tflite file; any unreadable, non-TFLite, truncated or
    corrupted file is a one-line TinyClusterError naming the file."""
    path, data = _read_file(path)
    try:
        return path, _read_model(path, data)
    except TinyClusterError:
        raise
    except (struct.error, IndexError, ValueError, TypeError, AttributeError, OverflowError,
            UnicodeDecodeError, MemoryError) as e:
        raise _err(path, f"not a valid TFLite model: the flatbuffer is truncated or corrupted "
                         f"({type(e).__name__}: {e})") from None


def _buffer_bytes(model, data: bytes, bi: int):
    """Bytes of buffer ``bi`` (None when empty), from the flatbuffer or from beyond it
    (buffers of large models are stored after the flatbuffer, given by offset/size)."""
    buf = model.Buffers(bi)
    if buf is None:
        return None
    off, size = int(buf.Offset()), int(buf.Size())
    if off > 1:  # offset 1 is TFLite's placeholder for "empty buffer stored outside"
        if off + size > len(data):
            raise IndexError(f"buffer {bi} lies beyond the end of the file")
        return data[off:off + size]
    if buf.DataIsNone() or buf.DataLength() == 0:
        return None
    arr = buf.DataAsNumpy()
    if not isinstance(arr, np.ndarray) or arr.size != buf.DataLength():
        raise IndexError(f"buffer {bi} is truncated")
    return arr.tobytes()


def _quant_params(q):
    if q is None:
        return None
    if q.DetailsType() != 0:
        raise ValueError("custom quantization details are not supported")
    if q.ScaleIsNone() or q.ScaleLength() == 0:
        return None
    scale = np.asarray(q.ScaleAsNumpy(), dtype=np.float32).reshape(-1).copy()
    if q.ZeroPointIsNone() or q.ZeroPointLength() == 0:
        zp = np.zeros(scale.shape, dtype=np.int64)
    else:
        zp = np.asarray(q.ZeroPointAsNumpy(), dtype=np.int64).reshape(-1).copy()
    if zp.size == 1 and scale.size > 1:
        zp = np.repeat(zp, scale.size)
    if zp.size != scale.size:
        raise ValueError(f"{scale.size} scales but {zp.size} zero points")
    return QuantParams(scale=scale, zero_point=zp, axis=int(q.QuantizedDimension()))


def _read_model(path: Path, data: bytes) -> dict:
    """Everything tinycluster needs from the flatbuffer, as plain Python values.

    Raises only the low-level exceptions of a corrupt file (caught by the caller)."""
    import flatbuffers
    import tflite

    names = _opcode_names()
    opt_classes = _options_classes(tflite.BuiltinOptions)
    model = tflite.Model.GetRootAsModel(data, 0)
    n_sub = model.SubgraphsLength()
    if n_sub == 0:
        raise _err(path, "the model has no subgraph")
    # Only control-flow ops (IF, WHILE, CALL_ONCE; all unsupported, so rejected by name) run other
    # subgraphs; subgraph 0 is the main graph.
    sg = model.Subgraphs(0)
    # every vector element is at least a 4-byte offset: larger counts mean a corrupted header
    # (checked up front so a garbage length cannot start a multi-million-step loop)
    for what, count in (("operator codes", model.OperatorCodesLength()), ("buffers", model.BuffersLength()),
                        ("tensors", sg.TensorsLength()), ("operators", sg.OperatorsLength())):
        if count * 4 > len(data):
            raise IndexError(f"{count} {what} cannot fit in {len(data)} bytes")

    opcodes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        # TFLite's GetBuiltinCode: max(builtin_code, deprecated_builtin_code). The package's own
        # BuiltinCode() substitutes the deprecated field below 127; read the raw field instead.
        o = oc._tab.Offset(10)
        builtin = oc._tab.Get(flatbuffers.number_types.Int32Flags, o + oc._tab.Pos) if o else 0
        code = max(int(builtin), int(oc.DeprecatedBuiltinCode()))
        name = names.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            cc = oc.CustomCode()
            name = f"CUSTOM({cc.decode('utf-8', 'replace') if cc else '?'})"
        opcodes.append((name, int(oc.Version())))

    tensors = []
    for ti in range(sg.TensorsLength()):
        t = sg.Tensors(ti)
        shape = tuple(int(d) for d in (t.ShapeAsNumpy() if t.ShapeLength() else []))
        dtype = _TENSOR_TYPES.get(int(t.Type()), f"type{int(t.Type())}")
        raw_name = t.Name()
        name = raw_name.decode("utf-8", "replace") if raw_name else f"tensor_{ti}"
        try:
            quant = _quant_params(t.Quantization())
            if quant is not None and quant.scale.size > 1 and (
                    not 0 <= quant.axis < len(shape) or shape[quant.axis] != quant.scale.size):
                raise ValueError(f"{quant.scale.size} per-channel scales on axis {quant.axis} of shape "
                                 f"{list(shape)}")
        except ValueError as e:
            raise _err(path, f"tensor {ti} ('{name}'): invalid quantization ({e})") from None
        if t.Sparsity() is not None:
            raise _err(path, f"tensor {ti} ('{name}') is stored sparse; tinycluster needs dense weights "
                             "(convert without sparsity optimizations)")
        bi = int(t.Buffer())
        n_buf = model.BuffersLength()
        if bi < 0 or (n_buf > 0 and bi >= n_buf):
            raise IndexError(f"tensor {ti} refers to buffer {bi} of {n_buf}")
        raw = _buffer_bytes(model, data, bi) if 0 < bi < n_buf else None
        arr = None
        if raw is not None:
            if dtype not in _NUMPY_TYPES:
                raise _err(path, f"tensor {ti} ('{name}') holds constant data of type {dtype}, "
                                 "which tinycluster does not support (int8 weights, int32 biases)")
            count = int(np.prod(shape, dtype=np.int64)) if shape else 1
            dt = np.dtype(dtype).newbyteorder("<")
            if len(raw) != count * dt.itemsize:
                raise _err(path, f"tensor {ti} ('{name}'): buffer {bi} holds {len(raw)} bytes but shape "
                                 f"{list(shape)} of {dtype} needs {count * dt.itemsize} (corrupted model)")
            arr = np.frombuffer(raw, dtype=dt).astype(np.dtype(dtype)).reshape(shape)
        tensors.append(dict(name=name, shape=shape, dtype=dtype, quant=quant, data=arr,
                            buffer=bi, variable=bool(t.IsVariable())))

    n_t = len(tensors)

    def tid_list(arr_fn, len_fn, what):
        out = [int(x) for x in (arr_fn() if len_fn() else [])]
        for x in out:
            if x < -1 or x >= n_t:
                raise IndexError(f"{what} refers to tensor {x} of {n_t}")
        return out

    ops = []
    for oi in range(sg.OperatorsLength()):
        op = sg.Operators(oi)
        ci = int(op.OpcodeIndex())
        if ci >= len(opcodes):
            raise IndexError(f"operator {oi} refers to opcode {ci} of {len(opcodes)}")
        name, version = opcodes[ci]
        inputs = tid_list(op.InputsAsNumpy, op.InputsLength, f"operator {oi}")
        outputs = tid_list(op.OutputsAsNumpy, op.OutputsLength, f"operator {oi}")
        options = None
        otype = int(op.BuiltinOptionsType())
        if otype != 0:
            cls = opt_classes.get(otype)
            tab = op.BuiltinOptions()
            if cls is not None and tab is not None:
                options = cls()
                options.Init(tab.Bytes, tab.Pos)
        ops.append(dict(index=oi, op=name, version=version, inputs=inputs, outputs=outputs, options=options))

    g_in = tid_list(sg.InputsAsNumpy, sg.InputsLength, "the subgraph's input list")
    g_out = tid_list(sg.OutputsAsNumpy, sg.OutputsLength, "the subgraph's output list")
    return dict(tensors=tensors, ops=ops, inputs=g_in, outputs=g_out, n_subgraphs=n_sub,
                version=int(model.Version()))


def _check_integer_model(path: Path, m: dict, only=None) -> None:
    """Reject float, dynamic-range, int16-activation and uint8 models with a clear message
    (looking at the ops in ``only``, or all)."""
    tensors, ops = m["tensors"], m["ops"]
    if not ops:
        raise _err(path, "the model has no operators")
    bad = {}
    for op in ops:
        if op["op"] in _BOUNDARY_OPS or (only is not None and op["op"] not in only):
            continue
        for tid in op["inputs"] + op["outputs"]:
            if tid < 0:
                continue
            t = tensors[tid]
            if t["data"] is not None:
                continue
            if t["dtype"] != "int8":
                bad.setdefault(t["dtype"], (op, t))
    if "float32" in bad or "float16" in bad:
        op, t = bad.get("float32") or bad.get("float16")
        raise _err(path, f"is a float model (operator {op['index']} {op['op']} computes on {t['dtype']} tensor "
                         f"'{t['name']}'); tinycluster needs a full-integer int8 model (convert with a "
                         "representative dataset, or use the Keras front end)")
    if "int16" in bad:
        op, t = bad["int16"]
        raise _err(path, f"has int16 activations (operator {op['index']} {op['op']}, tensor '{t['name']}'): "
                         "16x8 quantized models are not supported; convert to full-integer int8 "
                         "(TFLiteConverter with supported_ops=[TFLITE_BUILTINS_INT8])")
    if "uint8" in bad:
        op, t = bad["uint8"]
        raise _err(path, f"is a uint8 (legacy asymmetric) quantized model (operator {op['index']} {op['op']}, "
                         f"tensor '{t['name']}'); tinycluster needs a full-integer int8 model")
    if bad:
        dtype, (op, t) = next(iter(bad.items()))
        raise _err(path, f"operator {op['index']} {op['op']} uses tensor '{t['name']}' of type {dtype} at run "
                         "time; tinycluster needs int8 activations")
    # weighted ops with float weights (dynamic-range models have int8 weights but float activations,
    # caught above; a float weight with int8 activations is malformed but name it clearly)
    for op in ops:
        for tid in op["inputs"]:
            if tid >= 0 and tensors[tid]["data"] is not None and tensors[tid]["dtype"] in ("float32", "float16") \
                    and op["op"] not in _BOUNDARY_OPS and (only is None or op["op"] in only):
                raise _err(path, f"operator {op['index']} {op['op']} has float constant input "
                                 f"'{tensors[tid]['name']}'; tinycluster needs a full-integer int8 model")
    for tid, t in enumerate(tensors):
        if t["variable"]:
            raise _err(path, f"tensor {tid} ('{t['name']}') is a variable (stateful model); not supported")


def is_float_model(path) -> bool:
    """True when the model computes on float activations (a float or dynamic-range model, to
    be routed to the float front end); False for full-integer int8 models, including those
    with float input/output around QUANTIZE/DEQUANTIZE. Raises TinyClusterError for files
    that are not readable TFLite models."""
    path, m = read_model(path)
    return _float_compute(m) is not None


def _float_compute(m: dict, only=None):
    """(op, tensor) of the first compute op (not QUANTIZE/DEQUANTIZE; if ``only`` is given,
    one of those ops) touching a float activation, or None."""
    for op in m["ops"]:
        if op["op"] in _BOUNDARY_OPS or (only is not None and op["op"] not in only):
            continue
        for tid in op["inputs"] + op["outputs"]:
            if tid >= 0 and m["tensors"][tid]["data"] is None and \
                    m["tensors"][tid]["dtype"] in ("float32", "float16"):
                return op, m["tensors"][tid]
    return None


def load_tflite(path) -> Graph:
    """Read a full-integer int8 ``.tflite`` file into a :class:`~tinycluster.ir.Graph`.

    Node attrs come from each op handler's ``parse``; ``resolve_graph`` must be called
    afterwards (and after any pass that changes the graph) to fill ``node.params``.
    Raises :class:`TinyClusterError` (one line, names the file) for any bad input and
    :class:`UnsupportedOpError` for an op tinycluster has no handler for.
    """
    from .. import ops as ops_pkg
    from ..ops.base import RawOp

    path, m = read_model(path)

    # Which message helps more? A float model (supported ops computing on float) gets the float
    # message: its ops would all be fine once it is int8. Otherwise an unsupported op is named
    # first (also when only that op computes on float: the converter falls back to float
    # kernels for ops without int8 ones, e.g. CUMSUM between DEQUANTIZE and QUANTIZE).
    supported = set(ops_pkg.supported_ops())
    unsupported = [op for op in m["ops"] if op["op"] not in supported]
    float_in_supported = _float_compute(m, only=supported) is not None
    if unsupported and not float_in_supported:
        op = unsupported[0]
        others = sorted({o["op"] for o in unsupported} - {op["op"]})
        more = f"; also unsupported: {', '.join(others)}" if others else ""
        raise UnsupportedOpError(
            f"{path.name}: operator {op['index']} is {op['op']}, which tinycluster does not support "
            f"(supported: {', '.join(sorted(supported))}){more}")
    _check_integer_model(path, m, only=supported)
    if not m["inputs"] or not m["outputs"]:
        raise _err(path, "the model declares no input or no output tensor")

    tensors = []
    for tid, t in enumerate(m["tensors"]):
        tensors.append(Tensor(id=tid, name=t["name"], shape=t["shape"], dtype=t["dtype"], quant=t["quant"],
                              data=t["data"], buffer_index=t["buffer"]))
    graph = Graph(tensors=tensors, nodes=[], inputs=list(m["inputs"]), outputs=list(m["outputs"]),
                  source=str(path), name=path.stem,
                  meta={"format": "tflite", "schema_version": m["version"], "subgraphs": m["n_subgraphs"],
                        "op_versions": {op["index"]: op["version"] for op in m["ops"]}})
    for op in m["ops"]:
        handler = ops_pkg.get_handler(op["op"])
        raw = RawOp(index=op["index"], op=op["op"], inputs=list(op["inputs"]), outputs=list(op["outputs"]),
                    options=op["options"], source=str(path))
        try:
            attrs = handler.parse(raw, graph)
        except TinyClusterError as e:
            raise _prefixed(path, op["index"], op["op"], e) from None
        except (struct.error, IndexError, ValueError, TypeError, AttributeError, KeyError) as e:
            raise _err(path, f"operator {op['index']} ({op['op']}): cannot read its options "
                             f"({type(e).__name__}: {e})") from e
        node = Node(index=op["index"], op=op["op"], inputs=list(op["inputs"]), outputs=list(op["outputs"]),
                    attrs=dict(attrs or {}), name=f"{op['op'].lower()}_{op['index']}")
        graph.nodes.append(node)
    _check_topological(path, graph)
    return graph


def _prefixed(path: Path, index: int, op: str, e: TinyClusterError) -> TinyClusterError:
    """The handler's message on one line, prefixed with file and operator unless it names them."""
    msg = " ".join(str(e).split())
    if not msg.startswith(path.name):
        msg = f"{path.name}: operator {index} ({op}): {msg}"
    return type(e)(msg)


def _check_topological(path: Path, graph: Graph) -> None:
    """TFLite stores operators in execution order; check it (every input produced before use)."""
    ready = set(graph.inputs) | {t.id for t in graph.tensors if t.is_const}
    for n in graph.nodes:
        for tid in n.inputs:
            if tid >= 0 and tid not in ready:
                raise _err(path, f"operator {n.index} ({n.op}) reads tensor {tid} ('{graph.tensors[tid].name}') "
                                 "before any operator produces it (the model is not in execution order)")
        ready.update(t for t in n.outputs if t >= 0)
    for tid in graph.outputs:
        if tid not in ready:
            raise _err(path, f"output tensor {tid} ('{graph.tensors[tid].name}') is never produced")


def resolve_graph(graph: Graph) -> Graph:
    """Run every op handler's ``resolve`` (checks + integer params) in execution order.

    Errors become one-line :class:`TinyClusterError` naming the file, the operator index
    and the op. Returns the graph for chaining.
    """
    from ..ops import get_handler

    path = Path(graph.source or graph.name)
    for n in graph.nodes:
        h = get_handler(n.op)
        try:
            h.resolve(n, graph)
        except TinyClusterError as e:
            raise _prefixed(path, n.index, n.op, e) from None
        except Exception as e:  # a handler bug on this model: still one line, cause kept for debugging
            raise TinyClusterError(f"{path.name}: operator {n.index} ({n.op}): cannot prepare this layer "
                                   f"({type(e).__name__}: {e})") from e
    return graph
