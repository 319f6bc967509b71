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


def _clean_name(raw, default: str) -> str:
    """A tensor name fit for a one-line message: printable characters only (a newline or a
    control character in a name would break the one-line error)."""
    name = raw.decode("utf-8", "replace") if raw else ""
    name = "".join(c if c.isprintable() else "?" for c in name)
    return name or default


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
    _check_structure(path, data)
    try:
        return path, _read_model(path, data)
    except TinyClusterError:
        raise
    except (struct.error, IndexError, ValueError, TypeError, AttributeError, OverflowError,
            UnicodeDecodeError, MemoryError):
        raise _err(path, CORRUPTED) from None


#: the message for a file whose flatbuffer structure cannot be read
CORRUPTED = ("not a valid TFLite model: the flatbuffer is truncated or corrupted (a table, vector or string "
             "lies outside the file); re-export or re-download the model")


def _check_structure(path: Path, data: bytes) -> None:
    """Read the whole flatbuffer through the schema's object API (every table, vector and string
    reachable from the root, all subgraphs, buffers, metadata and signatures), as TFLite Micro's
    Python interpreter does before it loads a model: any read outside the file, or a vector
    length that cannot fit in it, makes the model unreadable."""
    from .schema import read_model_t

    try:
        read_model_t(data, path.name)
    except TinyClusterError:
        raise _err(path, CORRUPTED) from None


def _buffer_bytes(path: Path, model, data: bytes, bi: int):
    """Bytes of buffer ``bi`` (None when empty), from the flatbuffer or from beyond it
    (buffers of large models are stored after the flatbuffer, given by offset/size)."""
    buf = model.Buffers(bi)
    if buf is None:
        return None
    off, size = int(buf.Offset()), int(buf.Size())
    if off > 1:  # offset 1 is TFLite's placeholder for "empty buffer stored outside"
        if off + size > len(data):
            raise _err(path, f"buffer {bi} is stored at bytes {off}..{off + size}, beyond the end of the "
                             f"{len(data)}-byte file (truncated model)")
        return data[off:off + size]
    if buf.DataIsNone() or buf.DataLength() == 0:
        return None
    arr = buf.DataAsNumpy()
    if not isinstance(arr, np.ndarray) or arr.size != buf.DataLength():
        raise _err(path, f"buffer {bi} is truncated")
    return arr.tobytes()


def _quant_params(q, shape):
    """(QuantParams or None, problem or None) of a tensor's quantization table. Problems are
    reported by the validation of the tensors operators use (an unused tensor may carry junk)."""
    if q is None:
        return None, None
    if q.DetailsType() != 0:
        return None, "custom quantization details are not supported"
    if q.ScaleIsNone() or q.ScaleLength() == 0:
        return None, None
    scale = np.asarray(q.ScaleAsNumpy(), dtype=np.float32).reshape(-1).copy()
    if q.ZeroPointIsNone() or q.ZeroPointLength() == 0:
        # TFLite Micro ignores a quantization without zero points (scale 0, zero point 0)
        return None, f"{scale.size} scale(s) but no zero point (TFLite Micro then ignores its quantization)"
    zp = np.asarray(q.ZeroPointAsNumpy(), dtype=np.int64).reshape(-1).copy()
    if zp.size == 1 and scale.size > 1:
        zp = np.repeat(zp, scale.size)
    axis = int(q.QuantizedDimension())
    if zp.size != scale.size:
        return None, f"{scale.size} scales but {zp.size} zero points"
    if scale.size > 1 and (not 0 <= axis < len(shape) or shape[axis] != scale.size):
        return None, f"{scale.size} per-channel scales on quantized dimension {axis} of shape {list(shape)}"
    return QuantParams(scale=scale, zero_point=zp, axis=axis), None


def _read_model(path: Path, data: bytes) -> dict:
    """Everything tinycluster needs from the flatbuffer, as plain Python values.

    Index and size errors become one-line TinyClusterErrors naming the rule; only the low-level
    exceptions of a corrupt file escape (the caller turns them into one message)."""
    import flatbuffers
    import tflite

    names = _opcode_names()
    opt_classes = _options_classes(tflite.BuiltinOptions)
    model = tflite.Model.GetRootAsModel(data, 0)
    n_sub = model.SubgraphsLength()
    if n_sub == 0:
        raise _err(path, "the model has no subgraph")
    if n_sub > 1:
        raise _err(path, f"the model has {n_sub} subgraphs; tinycluster compiles single-subgraph models "
                         "(control flow such as IF, WHILE or CALL_ONCE is not supported)")
    sg = model.Subgraphs(0)
    # every vector element is at least a 4-byte offset: larger counts mean a corrupted header
    # (checked up front so a garbage length cannot start a multi-million-step loop)
    for what, count in (("operator codes", model.OperatorCodesLength()), ("buffers", model.BuffersLength()),
                        ("tensors", sg.TensorsLength()), ("operators", sg.OperatorsLength())):
        if count * 4 > len(data):
            raise _err(path, f"{CORRUPTED.split(' (')[0]}: it declares {count} {what}, more than a "
                             f"{len(data)}-byte file can hold")

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
            code_name = _clean_name(cc, "?")  # printable only: the name goes into one-line messages
            name = f"CUSTOM({code_name if len(code_name) <= 64 else code_name[:61] + '...'})"
        opcodes.append((name, int(oc.Version())))

    n_buf = model.BuffersLength()
    if n_buf:
        b0 = model.Buffers(0)
        size0 = 0 if b0 is None else (int(b0.Size()) if int(b0.Offset()) > 1 else int(b0.DataLength()))
        if size0:
            # TFLite's schema: buffer 0 is the empty sentinel that activations refer to; TFLite Micro
            # would take its bytes as the data of every such tensor
            raise _err(path, f"buffer 0 holds {size0} bytes, but TFLite reserves it as the empty buffer that "
                             "activation tensors refer to (corrupted model)")
    tensors = []
    for ti in range(sg.TensorsLength()):
        t = sg.Tensors(ti)
        shape = tuple(int(d) for d in (t.ShapeAsNumpy() if t.ShapeLength() else []))
        dtype = _TENSOR_TYPES.get(int(t.Type()), f"type{int(t.Type())}")
        name = _clean_name(t.Name(), f"tensor_{ti}")
        quant, quant_problem = _quant_params(t.Quantization(), shape)
        if t.Sparsity() is not None:
            raise _err(path, f"tensor {ti} ('{name}') is stored sparse; tinycluster needs dense weights "
                             "(convert without sparsity optimizations)")
        bi = int(t.Buffer())
        if bi < 0 or bi >= max(n_buf, 1):
            raise _err(path, f"tensor {ti} ('{name}') refers to buffer {bi}, but the model has {n_buf} buffers")
        raw = _buffer_bytes(path, model, data, bi) if 0 < bi < n_buf else None
        arr = None
        if raw is not None:
            if dtype not in _NUMPY_TYPES:
                raise _err(path, f"tensor {ti} ('{name}') holds constant data of type {dtype}, "
                                 "which tinycluster does not support (int8 weights, int32 biases)")
            if any(d < 0 for d in shape):
                raise _err(path, f"tensor {ti} ('{name}') holds constant data but has shape {list(shape)} "
                                 "with a negative dimension")
            count = int(np.prod(shape, dtype=object)) if shape else 1
            dt = np.dtype(dtype).newbyteorder("<")
            if len(raw) != count * dt.itemsize:
                raise _err(path, f"tensor {ti} ('{name}'): buffer {bi} holds {len(raw)} bytes but shape "
                                 f"{list(shape)} of {dtype} needs {count * dt.itemsize} (corrupted model)")
            arr = np.frombuffer(raw, dtype=dt).astype(np.dtype(dtype)).reshape(shape)
        tensors.append(dict(name=name, shape=shape, dtype=dtype, quant=quant, quant_problem=quant_problem,
                            data=arr, buffer=bi, variable=bool(t.IsVariable())))

    n_t = len(tensors)

    def tid_list(arr_fn, len_fn, what, optional_ok):
        out = [int(x) for x in (arr_fn() if len_fn() else [])]
        for k, x in enumerate(out):
            if not (-1 if optional_ok else 0) <= x < n_t:
                raise _err(path, f"{what} {k} refers to tensor {x}, but the subgraph has {n_t} tensors "
                                 f"(valid: 0..{n_t - 1}{', or -1 for an absent optional input' if optional_ok else ''})")
        return out

    ops = []
    for oi in range(sg.OperatorsLength()):
        op = sg.Operators(oi)
        ci = int(op.OpcodeIndex())
        if ci >= len(opcodes):
            raise _err(path, f"operator {oi} refers to operator code {ci}, but the model has {len(opcodes)}")
        name, version = opcodes[ci]
        inputs = tid_list(op.InputsAsNumpy, op.InputsLength, f"operator {oi} ({name}): input", True)
        outputs = tid_list(op.OutputsAsNumpy, op.OutputsLength, f"operator {oi} ({name}): output", False)
        options, options_type = None, None
        otype = int(op.BuiltinOptionsType())
        if otype != 0:
            cls = opt_classes.get(otype)
            options_type = cls.__name__ if cls is not None else f"options type {otype}"
            tab = op.BuiltinOptions()
            if cls is not None and tab is not None:
                options = cls()
                options.Init(tab.Bytes, tab.Pos)
        inter = tid_list(op.IntermediatesAsNumpy, op.IntermediatesLength, f"operator {oi} ({name}): intermediate",
                         False)
        for tid in inter:
            n = int(np.prod([max(d, 0) for d in tensors[tid]["shape"]], dtype=object))
            if n:  # TFLite Micro's allocator: "Does not support intermediate tensor with non-zero size"
                raise _err(path, f"operator {oi} ({name}): intermediate tensor {tid} ('{tensors[tid]['name']}') has "
                                 f"{n} elements; TFLite Micro supports intermediate tensors of size 0 only")
        ops.append(dict(index=oi, op=name, version=version, inputs=inputs, outputs=outputs, options=options,
                        options_type=options_type, custom_options=not op.CustomOptionsIsNone()))

    g_in = tid_list(sg.InputsAsNumpy, sg.InputsLength, "the subgraph's input", False)
    g_out = tid_list(sg.OutputsAsNumpy, sg.OutputsLength, "the subgraph's output", False)
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
    if ("float32" in bad or "float16" in bad) and _int8_compute(m):
        op, t = bad.get("float32") or bad.get("float16")
        raise _err(path, f"mixes float and int8 activations: operator {op['index']} {op['op']} computes on "
                         f"{t['dtype']} tensor '{t['name']}'; tinycluster needs a full-integer int8 model")
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
    return _float_compute(m) is not None and not _int8_compute(m)


def _int8_compute(m: dict) -> bool:
    """Does a compute op (not QUANTIZE/DEQUANTIZE) read or write an int8 activation? Then the
    model is (meant to be) integer: a float tensor among its ops is an error the int8 importer
    names, not a reason to run the float front end."""
    for op in m["ops"]:
        if op["op"] in _BOUNDARY_OPS:
            continue
        for tid in op["inputs"] + op["outputs"]:
            if tid >= 0 and m["tensors"][tid]["data"] is None and m["tensors"][tid]["dtype"] == "int8":
                return True
    return False


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
    _validate_model(path, m)

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
        except (struct.error, IndexError, ValueError, TypeError, AttributeError, KeyError, OverflowError):
            raise _err(path, f"operator {op['index']} ({op['op']}): its builtin options cannot be read "
                             "(corrupted model)") from None
        node = Node(index=op["index"], op=op["op"], inputs=list(op["inputs"]), outputs=list(op["outputs"]),
                    attrs=dict(attrs or {}), name=f"{op['op'].lower()}_{op['index']}")
        graph.nodes.append(node)
    _check_topological(path, graph)
    return graph


#: the builtin options table each op reads (``True``: the op cannot run without it). TFLite Micro
#: runs an op whose options table is absent or of another type with zeroed parameters (strides 0,
#: softmax beta 0, ...); tinycluster refuses such a model instead of guessing.
OPTIONS_OF = {
    "CONV_2D": ("Conv2DOptions", True), "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", True),
    "AVERAGE_POOL_2D": ("Pool2DOptions", True), "MAX_POOL_2D": ("Pool2DOptions", True),
    "SOFTMAX": ("SoftmaxOptions", True), "FULLY_CONNECTED": ("FullyConnectedOptions", False),
    "ADD": ("AddOptions", False), "MUL": ("MulOptions", False),
    "CONCATENATION": ("ConcatenationOptions", False), "MEAN": ("ReducerOptions", False),
}
#: the largest tensor tinycluster compiles (elements); microcontroller models are far below it
MAX_TENSOR_ELEMENTS = 1 << 24


def _validate_model(path: Path, m: dict) -> None:
    """Model-level rules TFLite's interpreter relies on, checked before any op is prepared: option
    tables of the right type, one producer per tensor, no writes into constants or model inputs,
    positive dimensions, valid quantization (finite positive scales, int8 zero points) on every
    tensor an operator or the model's interface uses."""
    tensors = m["tensors"]

    def tname(tid):
        return f"tensor {tid} ('{tensors[tid]['name']}')"

    producers, used = {}, set()
    for op in m["ops"]:
        where = f"operator {op['index']} ({op['op']})"
        want = OPTIONS_OF.get(op["op"])
        if want is not None:
            if op["options_type"] is not None and op["options_type"] != want[0]:
                raise _err(path, f"{where}: its builtin options are {op['options_type']}, but {op['op']} reads "
                                 f"{want[0]} (corrupted model)")
            if op["options_type"] is None and want[1]:
                raise _err(path, f"{where}: has no {want[0]} (strides, padding, ...); TFLite Micro would run it "
                                 "with zeroed parameters")
        if op["op"] == "DEPTHWISE_CONV_2D" and len(op["inputs"]) == 3 and op["inputs"][2] < 0:
            # TFLite Micro's depthwise kernel crashes (SIGSEGV) on a bias index of -1, where a
            # two-input depthwise runs without bias (checked against the installed tflite-micro)
            raise _err(path, f"{where}: bias input is -1 (absent) in a three-input depthwise conv, which TFLite "
                             "Micro cannot run (it crashes); give a bias tensor or drop the third input")
        if op["custom_options"] and not op["op"].startswith("CUSTOM"):
            # TFLite Micro's AllocateNodeAndRegistrations: a builtin op with custom_options is refused
            raise _err(path, f"{where}: a builtin operator with custom options (only CUSTOM operators carry "
                             "them; TFLite Micro refuses the model)")
        if not op["outputs"]:
            raise _err(path, f"{where}: has no output tensor")
        for tid in op["outputs"]:
            if tid in producers:
                raise _err(path, f"{where}: writes {tname(tid)}, which operator {producers[tid]} already writes "
                                 "(every tensor has exactly one producer)")
            if tensors[tid]["data"] is not None:
                raise _err(path, f"{where}: writes {tname(tid)}, a constant tensor (its buffer holds data)")
            if tid in m["inputs"]:
                raise _err(path, f"{where}: writes {tname(tid)}, the model's input")
            if tid in op["inputs"]:
                raise _err(path, f"{where}: reads and writes {tname(tid)} (an operator cannot update a "
                                 "tensor in place)")
            producers[tid] = op["index"]
        used.update(t for t in op["inputs"] + op["outputs"] if t >= 0)
    for what, lst in (("input", m["inputs"]), ("output", m["outputs"])):
        if len(set(lst)) != len(lst):
            raise _err(path, f"the model's {what} list {lst} names a tensor twice")
    for tid in m["inputs"]:
        if tensors[tid]["data"] is not None:
            raise _err(path, f"the model's input {tname(tid)} is a constant tensor")
    for tid in m["outputs"]:
        if tid not in producers:
            what = ("a constant" if tensors[tid]["data"] is not None else
                    "the model's input" if tid in m["inputs"] else "never computed")
            raise _err(path, f"the model's output {tname(tid)} is not written by any operator (it is {what})")
    for tid in sorted(used | set(m["inputs"]) | set(m["outputs"])):
        t = tensors[tid]
        if any(d < 1 for d in t["shape"]):
            raise _err(path, f"{tname(tid)} has shape {list(t['shape'])}: every dimension must be >= 1")
        n = 1
        for d in t["shape"]:
            n *= d
        if n > MAX_TENSOR_ELEMENTS:
            raise _err(path, f"{tname(tid)} has {n:,} elements; tinycluster compiles tensors of up to "
                             f"{MAX_TENSOR_ELEMENTS:,} elements (microcontroller models)")
        if t["dtype"] not in ("int8", "int32", "float32"):
            continue  # a type the ops' own checks name
        if t["quant_problem"] is not None and t["dtype"] != "float32":
            raise _err(path, f"{tname(tid)}: invalid quantization: {t['quant_problem']}")
        q = t["quant"]
        if q is None or t["dtype"] != "int8":
            continue
        bad = [float(v) for v in q.scale if not (np.isfinite(v) and v > 0)]
        if bad:
            raise _err(path, f"{tname(tid)}: quantization scale {bad[0]!r} is not a finite positive number")
        zp = [int(v) for v in q.zero_point if not -128 <= int(v) <= 127]
        if zp:
            raise _err(path, f"{tname(tid)}: zero point {zp[0]} is outside the int8 range [-128, 127]")


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


#: the message for a failure no specific check caught (a missing validation: a bug to report)
UNCHECKED = ("tinycluster cannot prepare this layer and has no specific check for the reason (a bug: please "
             "report it with the model; TINYCLUSTER_DEBUG=1 shows the cause)")


def resolve_graph(graph: Graph) -> Graph:
    """Run every op handler's ``resolve`` (checks + integer params) in execution order.

    Errors become one-line :class:`TinyClusterError` naming the file, the operator index
    and the op. Returns the graph for chaining.
    """
    from ..ops import get_handler

    from ..ops.base import check_operands

    path = Path(graph.source or graph.name)
    for n in graph.nodes:
        h = get_handler(n.op)
        try:
            check_operands(h, n, graph)
            h.resolve(n, graph)
        except TinyClusterError as e:
            raise _prefixed(path, n.index, n.op, e) from None
        except Exception as e:  # a handler bug on this model: one line, the cause for TINYCLUSTER_DEBUG
            raise TinyClusterError(f"{path.name}: operator {n.index} ({n.op}): {UNCHECKED}") from e
    return graph
