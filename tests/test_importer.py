"""TFLite importer: the shared models import faithfully (checked against LiteRT's own view of
the file), and every kind of bad input is a one-line TinyClusterError naming the file."""
import os

import numpy as np
import pytest

from tinycluster.errors import TinyClusterError, UnsupportedOpError
from tinycluster.importers.tflite import load_tflite, resolve_graph
from tinycluster.ops import supported_ops
from tinycluster.ops import base as ops_base

from conftest import shared_model

MODELS = ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "vww_96_int8.tflite", "ad01_int8.tflite"]


def _one_line_error(exc_info, *needles):
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    return msg


# -- faithful import ------------------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS)
def test_shared_model_matches_litert(model):
    """Tensors (shape, dtype, quantization, constant data) and ops as LiteRT reads them."""
    from ai_edge_litert.interpreter import Interpreter

    path = shared_model(model)
    g = load_tflite(path)
    interp = Interpreter(model_path=str(path))
    details = {d["index"]: d for d in interp.get_tensor_details()}
    assert g.name == path.stem
    assert g.source == str(path)
    assert g.inputs == [d["index"] for d in interp.get_input_details()]
    assert g.outputs == [d["index"] for d in interp.get_output_details()]
    for t in g.tensors:
        d = details[t.id]
        assert t.name == d["name"]
        assert list(t.shape) == list(d["shape"])
        assert np.dtype(t.dtype) == np.dtype(d["dtype"])
        qp = d["quantization_parameters"]
        if len(qp["scales"]):
            assert t.quant is not None
            np.testing.assert_array_equal(t.quant.scale, qp["scales"].astype(np.float32))
            np.testing.assert_array_equal(t.quant.zero_point, qp["zero_points"])
            assert t.quant.axis == qp["quantized_dimension"]
        else:
            assert t.quant is None
        if t.is_const:
            ref = interp.get_tensor(t.id)
            assert t.data.dtype == ref.dtype and t.data.shape == ref.shape
            np.testing.assert_array_equal(t.data, ref)
    ops = interp._get_ops_details()
    assert len(g.nodes) == len(ops)
    for n, o in zip(g.nodes, ops):
        assert n.index == o["index"]
        assert n.op == o["op_name"]
        assert n.inputs == [int(x) for x in o["inputs"]]
        assert n.outputs == [int(x) for x in o["outputs"]]
        assert n.name == f"{n.op.lower()}_{n.index}"
    # the weighted ops all expose an int8 constant weight
    wt = list(g.weight_tensors())
    assert wt and all(t.data.dtype == np.int8 for _, t in wt)


@pytest.mark.parametrize("model", MODELS)
def test_shared_model_resolves(model):
    g = load_tflite(shared_model(model))
    assert resolve_graph(g) is g


# -- bad input --------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(TinyClusterError) as e:
        load_tflite(tmp_path / "nope.tflite")
    _one_line_error(e, "nope.tflite", "no such file")


def test_directory(tmp_path):
    with pytest.raises(TinyClusterError) as e:
        load_tflite(tmp_path)
    _one_line_error(e, "directory")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.tflite"
    p.write_bytes(b"")
    with pytest.raises(TinyClusterError) as e:
        load_tflite(p)
    _one_line_error(e, "empty.tflite", "not a TFLite model")


@pytest.mark.parametrize("fraction", [0.02, 0.1, 0.3, 0.5, 0.75, 0.9, 0.99])
def test_truncated_file(tmp_path, fraction):
    src = shared_model("kws_ref_model.tflite").read_bytes()
    p = tmp_path / "cut.tflite"
    p.write_bytes(src[: int(len(src) * fraction)])
    with pytest.raises(TinyClusterError) as e:
        load_tflite(p)
    _one_line_error(e, "cut.tflite")


def test_every_truncation_is_a_clean_error(tmp_path):
    """Cut the file at many points: never a traceback from flatbuffers/numpy, never a silent success."""
    src = shared_model("kws_ref_model.tflite").read_bytes()
    p = tmp_path / "cut.tflite"
    for n in range(0, len(src), 211):
        p.write_bytes(src[:n])
        with pytest.raises(TinyClusterError):
            load_tflite(p)


def test_random_bytes(tmp_path):
    rng = np.random.default_rng(7)
    p = tmp_path / "random.tflite"
    p.write_bytes(rng.bytes(4096))
    with pytest.raises(TinyClusterError) as e:
        load_tflite(p)
    _one_line_error(e, "random.tflite", "not a TFLite model")


def test_random_bytes_with_identifier(tmp_path):
    """Garbage behind a valid-looking header must not escape as a flatbuffers exception."""
    rng = np.random.default_rng(8)
    p = tmp_path / "garbage.tflite"
    for i in range(20):
        p.write_bytes(rng.bytes(4) + b"TFL3" + rng.bytes(int(rng.integers(0, 3000))))
        with pytest.raises(TinyClusterError):
            load_tflite(p)


def test_corrupted_bytes_never_escape(tmp_path):
    """Random byte flips in a real model: either it still imports or it is a TinyClusterError."""
    src = shared_model("kws_ref_model.tflite").read_bytes()
    rng = np.random.default_rng(9)
    p = tmp_path / "flipped.tflite"
    for _ in range(60):
        b = bytearray(src)
        for _ in range(int(rng.integers(1, 30))):
            # the header and tables sit in the first few KB: aim there most of the time
            hi = 4096 if rng.random() < 0.8 else len(b)
            b[int(rng.integers(8, hi))] = int(rng.integers(0, 256))
        p.write_bytes(bytes(b))
        try:
            load_tflite(p)
        except TinyClusterError as e:
            assert "\n" not in str(e)


def test_float_model():
    path = shared_model("kws_ref_model_float32.tflite")
    with pytest.raises(TinyClusterError) as e:
        load_tflite(path)
    _one_line_error(e, "kws_ref_model_float32.tflite", "float model", "int8", "representative dataset")


def _opcode_fields(data: bytes):
    """[(op name index, deprecated_builtin_code byte offset, builtin_code byte offset or None)] per opcode."""
    import tflite

    m = tflite.Model.GetRootAsModel(data, 0)
    out = []
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        o4, o10 = oc._tab.Offset(4), oc._tab.Offset(10)
        out.append((oc.BuiltinCode(), oc._tab.Pos + o4 if o4 else None, oc._tab.Pos + o10 if o10 else None))
    return m, out


def _first_op_using(m, opcode_index):
    sg = m.Subgraphs(0)
    for i in range(sg.OperatorsLength()):
        if sg.Operators(i).OpcodeIndex() == opcode_index:
            return i
    raise AssertionError("opcode unused")


def test_unsupported_op_deprecated_code(tmp_path):
    """LSTM (code 16) patched into the deprecated_builtin_code of kws's AVERAGE_POOL_2D opcode."""
    src = shared_model("kws_ref_model.tflite").read_bytes()
    m, fields = _opcode_fields(src)
    ci = [f[0] for f in fields].index(1)  # AVERAGE_POOL_2D
    code, dep_off, b_off = fields[ci]
    assert dep_off is not None
    b = bytearray(src)
    b[dep_off] = 16  # LSTM
    if b_off is not None:
        b[b_off:b_off + 4] = (16).to_bytes(4, "little")
    p = tmp_path / "model.tflite"
    p.write_bytes(bytes(b))
    with pytest.raises(UnsupportedOpError) as e:
        load_tflite(p)
    idx = _first_op_using(m, ci)
    msg = _one_line_error(e, "model.tflite", f"operator {idx} is LSTM", "supported:")
    for op in supported_ops():
        assert op in msg


def test_unsupported_op_extended_code(tmp_path):
    """CUMSUM (128) lives only in builtin_code (deprecated field = 127 placeholder)."""
    src = shared_model("pretrainedResnet_quant.tflite").read_bytes()
    m, fields = _opcode_fields(src)
    ci = [f[0] for f in fields].index(1)  # AVERAGE_POOL_2D
    code, dep_off, b_off = fields[ci]
    assert dep_off is not None and b_off is not None
    b = bytearray(src)
    b[dep_off] = 127
    b[b_off:b_off + 4] = (128).to_bytes(4, "little")
    p = tmp_path / "resnet.tflite"
    p.write_bytes(bytes(b))
    with pytest.raises(UnsupportedOpError) as e:
        load_tflite(p)
    _one_line_error(e, "resnet.tflite", f"operator {_first_op_using(m, ci)} is CUMSUM", "supported:")


def _patch_tensor_type(src: bytes, tid: int, new_type: int) -> bytes:
    import tflite

    m = tflite.Model.GetRootAsModel(src, 0)
    t = m.Subgraphs(0).Tensors(tid)
    off = t._tab.Offset(6)
    assert off, "type field absent"
    b = bytearray(src)
    b[t._tab.Pos + off] = new_type
    return bytes(b)


def test_int16_activations(tmp_path):
    src = shared_model("kws_ref_model.tflite").read_bytes()
    g = load_tflite(shared_model("kws_ref_model.tflite"))
    act = g.nodes[0].outputs[0]
    p = tmp_path / "a16.tflite"
    p.write_bytes(_patch_tensor_type(src, act, 7))  # INT16
    with pytest.raises(TinyClusterError) as e:
        load_tflite(p)
    _one_line_error(e, "a16.tflite", "int16 activations")


def test_uint8_activations(tmp_path):
    src = shared_model("kws_ref_model.tflite").read_bytes()
    g = load_tflite(shared_model("kws_ref_model.tflite"))
    act = g.nodes[1].outputs[0]
    p = tmp_path / "u8.tflite"
    p.write_bytes(_patch_tensor_type(src, act, 3))  # UINT8
    with pytest.raises(TinyClusterError) as e:
        load_tflite(p)
    _one_line_error(e, "u8.tflite", "uint8")


def test_resolve_errors_are_one_line_and_name_the_op(monkeypatch):
    g = load_tflite(shared_model("kws_ref_model.tflite"))
    node = g.nodes[2]
    h = ops_base.get_handler(node.op)

    class Broken(type(h)):
        def resolve(self, n, graph):
            if n is node:
                raise TinyClusterError("bad\nthing")
            return super().resolve(n, graph)

    monkeypatch.setitem(ops_base._REGISTRY, node.op, Broken())
    with pytest.raises(TinyClusterError) as e:
        resolve_graph(g)
    _one_line_error(e, "kws_ref_model.tflite", f"operator {node.index} ({node.op})", "bad thing")

    class Buggy(type(h)):
        def resolve(self, n, graph):
            if n is node:
                raise ZeroDivisionError("division by zero")
            return super().resolve(n, graph)

    monkeypatch.setitem(ops_base._REGISTRY, node.op, Buggy())
    with pytest.raises(TinyClusterError) as e:
        resolve_graph(g)
    # no dependency text in the message (it names the rule-less failure as a bug to report); the
    # cause stays attached for TINYCLUSTER_DEBUG=1
    msg = _one_line_error(e, f"operator {node.index} ({node.op})", "no specific check")
    assert "ZeroDivisionError" not in msg and isinstance(e.value.__cause__, ZeroDivisionError)


# -- models made by TFLiteConverter ----------------------------------------------------------
def _convert(io_type, quantize=True, extra=None):
    from tinycluster._quiet import import_tensorflow

    tf = import_tensorflow()
    import tf_keras as keras
    from tf_keras import layers as L

    keras.utils.set_random_seed(0)
    inp = L.Input((8, 8, 2), batch_size=1)
    x = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    if extra == "cumsum":
        x = tf.math.cumsum(x, axis=1)
    x = L.Flatten()(x)
    x = L.Dense(3)(x)
    model = keras.Model(inp, x)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize:
        rng = np.random.default_rng(0)
        conv.representative_dataset = lambda: ([rng.normal(size=(1, 8, 8, 2)).astype(np.float32)] for _ in range(16))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io_type is not None:
            conv.inference_input_type = io_type(tf)
            conv.inference_output_type = io_type(tf)
    return conv.convert()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    d = tmp_path_factory.mktemp("converted")
    out = {}
    for name, kw in {"float_io": dict(io_type=None), "int8_io": dict(io_type=lambda tf: tf.int8),
                     "dynamic_range": dict(io_type=None, quantize=False)}.items():
        p = d / f"{name}.tflite"
        p.write_bytes(_convert(**kw))
        out[name] = p
    return out


def test_float_io_int8_model_imports(converted):
    """Full-integer model with float input/output around QUANTIZE/DEQUANTIZE is an int8 model."""
    from tinycluster.importers.tflite import is_float_model

    p = converted["float_io"]
    assert not is_float_model(p)
    g = resolve_graph(load_tflite(p))
    ops = [n.op for n in g.nodes]
    assert ops[0] == "QUANTIZE" and ops[-1] == "DEQUANTIZE"
    assert g.tensors[g.inputs[0]].dtype == "float32"
    assert not is_float_model(converted["int8_io"])
    assert load_tflite(converted["int8_io"]).tensors[0].dtype in ("int8", "int32", "float32")


def test_dynamic_range_model_is_a_float_model(converted):
    """int8 weights but float activations: not full-integer."""
    from tinycluster.importers.tflite import is_float_model

    p = converted["dynamic_range"]
    assert is_float_model(p)
    with pytest.raises(TinyClusterError) as e:
        load_tflite(p)
    _one_line_error(e, "dynamic_range.tflite", "float model", "full-integer int8")


def test_unsupported_op_from_the_converter(tmp_path):
    p = tmp_path / "cumsum.tflite"
    p.write_bytes(_convert(lambda tf: tf.int8, extra="cumsum"))
    with pytest.raises(UnsupportedOpError) as e:
        load_tflite(p)
    _one_line_error(e, "cumsum.tflite", "is CUMSUM", "which tinycluster does not support", "supported:")
