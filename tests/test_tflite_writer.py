"""<name>_clustered.tflite: the original bytes with exactly the clustered weight buffers, the rewritten
biases and the new weight scales changed (in place), or a rewrite through the object API when a
per-tensor weight becomes per-channel."""
import numpy as np
import pytest

from tinycluster.compress.cluster import cluster_graph
from tinycluster.errors import TinyClusterError
from tinycluster.export.tflite_writer import write_clustered_tflite
from tinycluster.importers.tflite import load_tflite

from conftest import shared_model

MODELS = ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "vww_96_int8.tflite", "ad01_int8.tflite"]


def _buffer_ranges(data: bytes, buffer_indices):
    import tflite

    m = tflite.Model.GetRootAsModel(data, 0)
    out = []
    for bi in buffer_indices:
        b = m.Buffers(bi)
        o = b._tab.Offset(4)
        start = b._tab.Vector(o)
        out.append((start, start + b._tab.VectorLen(o)))
    return out


def _quant_ranges(data: bytes, tensor_ids):
    """Byte ranges of the scale and zero-point vectors of the given tensors."""
    import tflite

    sg = tflite.Model.GetRootAsModel(data, 0).Subgraphs(0)
    out = []
    for tid in tensor_ids:
        q = sg.Tensors(tid).Quantization()
        for field, size in ((8, 4), (10, 8)):
            o = q._tab.Offset(field)
            start = q._tab.Vector(o)
            out.append((start, start + size * q._tab.VectorLen(o)))
    return out


@pytest.mark.parametrize("model", MODELS)
def test_8_bits_rewrites_identical_file(model, tmp_path):
    path = shared_model(model)
    g = load_tflite(path)
    cluster_graph(g, bits=8, granularity="per-channel")
    out = tmp_path / "m_clustered.tflite"
    data = write_clustered_tflite(None, g, out)
    assert data == path.read_bytes()
    assert out.read_bytes() == data
    assert list(tmp_path.iterdir()) == [out]  # no temp file left behind


CASES = [(m, 4, "per-channel") for m in MODELS] + [(m, 2, "per-tensor") for m in MODELS]


@pytest.mark.parametrize("model,bits,granularity", CASES)
def test_lossy_changes_exactly_the_weight_buffers(model, bits, granularity, tmp_path):
    path = shared_model(model)
    src = path.read_bytes()
    g = load_tflite(path)
    cluster_graph(g, bits=bits, granularity=granularity)
    data = write_clustered_tflite(src, g)
    assert len(data) == len(src)  # per-channel models: every change in place
    clustered = [t for t in g.tensors if t.clustering is not None]
    assert clustered
    rewritten = sorted(g.meta.get("rewritten", ()))
    rescaled = sorted(g.meta.get("source_quant", {}))
    assert not rewritten and not rescaled  # these layouts keep the scales and biases
    ranges = _buffer_ranges(src, [t.buffer_index for t in clustered] +
                            [g.tensors[tid].buffer_index for tid in rewritten]) + _quant_ranges(src, rescaled)
    inside = np.zeros(len(src), dtype=bool)
    for lo, hi in ranges:
        inside[lo:hi] = True
    diff = np.frombuffer(src, np.uint8) != np.frombuffer(data, np.uint8)
    assert diff.any()
    assert not (diff & ~inside).any(), "bytes outside the clustered weight buffers changed"
    # the rewritten model imports with exactly the clustered values, everything else unchanged
    p = tmp_path / "c.tflite"
    p.write_bytes(data)
    g2 = load_tflite(p)
    _same_as_graph(g, g2)


def _same_as_graph(g, g2):
    """The model read back holds exactly what the graph says: clustered values, new data, scales."""
    for t, t2 in zip(g.tensors, g2.tensors):
        assert (t.name, t.shape, t.dtype, t.buffer_index) == (t2.name, t2.shape, t2.dtype, t2.buffer_index)
        if t.clustering is not None:
            assert np.array_equal(t2.data, t.clustering.values())
        elif t.data is not None:
            assert np.array_equal(t2.data, t.data)
        else:
            assert t2.data is None
        if t.quant is not None:
            assert np.array_equal(t2.quant.scale, t.quant.scale) and t2.quant.axis == t.quant.axis
            assert np.array_equal(t2.quant.zero_point, t.quant.zero_point)


def _run_both(g, data, n=3):
    """TFLite Micro on ``data`` and the numpy references on ``g`` give the same bytes."""
    from tflite_micro.python.tflite_micro import runtime

    from tinycluster.executor import run_graph

    interp = runtime.Interpreter.from_bytes(data, arena_size=1 << 20)
    rng = np.random.default_rng(0)
    for _ in range(n):
        x = rng.integers(-128, 128, size=g.tensors[g.inputs[0]].shape, dtype=np.int8)
        interp.set_input(x, 0)
        interp.invoke()
        assert np.array_equal(interp.get_output(0), run_graph(g, x))


def test_new_scales_and_biases_in_place(tmp_path):
    """A per-channel weight given new scales (normalized layout): weights, bias and the scale and
    zero-point vectors are overwritten in place; nothing else in the file changes."""
    from tiny_tflite import fully_connected_model

    from tinycluster.importers.tflite import resolve_graph

    rng = np.random.default_rng(7)
    w = np.clip(np.round(rng.normal(0, 50, size=(8, 40))), -127, 127).astype(np.int8)
    bias = rng.integers(-3000, 3000, size=8).astype(np.int32)
    src = fully_connected_model(w, bias, w_scale=rng.uniform(0.01, 0.03, 8))
    p = tmp_path / "fc.tflite"
    p.write_bytes(src)
    g = resolve_graph(load_tflite(p))
    cluster_graph(g, bits=2, granularity="normalized")
    t = g.tensors[1]
    assert t.clustering.granularity == "normalized" and sorted(g.meta["source_quant"]) == [1]
    assert sorted(g.meta["rewritten"]) == [2]  # the bias, requantized to the new scales
    data = write_clustered_tflite(None, g)
    assert len(data) == len(src)
    ranges = _buffer_ranges(src, [1, 2]) + _quant_ranges(src, [1])
    inside = np.zeros(len(src), dtype=bool)
    for lo, hi in ranges:
        inside[lo:hi] = True
    diff = np.frombuffer(src, np.uint8) != np.frombuffer(data, np.uint8)
    assert diff.any() and not (diff & ~inside).any()
    q = tmp_path / "c.tflite"
    q.write_bytes(data)
    _same_as_graph(g, load_tflite(q))
    _run_both(g, data)


@pytest.mark.parametrize("model", MODELS)
def test_normalized_rewrites_read_back_and_run(model, tmp_path):
    """Normalized layout on the shared models (their final FULLY_CONNECTED is quantized per tensor,
    so the file is rewritten through the object API): the file holds what the graph says."""
    path = shared_model(model)
    g = load_tflite(path)
    cluster_graph(g, bits=3, granularity="normalized")
    assert g.meta["source_quant"] and g.meta["rewritten"]
    data = write_clustered_tflite(None, g)
    p = tmp_path / "c.tflite"
    p.write_bytes(data)
    _same_as_graph(g, load_tflite(p))
    _run_both(g, data, n=2)


def test_per_tensor_weights_become_per_channel(tmp_path):
    """ad01's fully connected weights are quantized per tensor; the normalized layout gives them
    per-channel scales: the model is rewritten through the object API, reads back with exactly the
    graph's values and runs in TFLite Micro with the same bytes as the numpy references."""
    path = shared_model("ad01_int8.tflite")
    g = load_tflite(path)
    assert all(t.quant.scale.size == 1 for _, t in g.weight_tensors())
    recs = cluster_graph(g, bits=4, granularity="normalized")
    for r, (_, t) in zip(recs, g.weight_tensors()):
        if r["granularity"] == "normalized":
            assert t.quant.scale.size == t.shape[0] and r["scales"] == "rewritten"
        else:  # [128, 8]: 127 more requantization entries would cost more than the int8 weights
            assert r["granularity"] == "raw int8" and t.quant.scale.size == 1 and t.size == 1024
    data = write_clustered_tflite(None, g)
    p = tmp_path / "c.tflite"
    p.write_bytes(data)
    _same_as_graph(g, load_tflite(p))
    _run_both(g, data)


def test_clustered_model_runs_in_tflm():
    from tflite_micro.python.tflite_micro import runtime

    path = shared_model("kws_ref_model.tflite")
    g = load_tflite(path)
    cluster_graph(g, bits=3)
    interp = runtime.Interpreter.from_bytes(write_clustered_tflite(None, g), arena_size=1 << 20)
    x = np.zeros(g.tensors[g.inputs[0]].shape, dtype=np.int8)
    interp.set_input(x, 0)
    interp.invoke()
    assert interp.get_output(0).shape == tuple(g.tensors[g.outputs[0]].shape)


def test_missing_source_is_a_clean_error(tmp_path):
    src = shared_model("kws_ref_model.tflite").read_bytes()
    p = tmp_path / "m.tflite"
    p.write_bytes(src)
    g = load_tflite(p)
    cluster_graph(g, bits=4)
    p.unlink()
    with pytest.raises(TinyClusterError) as e:
        write_clustered_tflite(None, g)
    assert "m.tflite" in str(e.value)
    # with the bytes given, no file is needed
    assert write_clustered_tflite(src, g)[4:8] == b"TFL3"


def test_mismatched_source_is_a_clean_error():
    g = load_tflite(shared_model("kws_ref_model.tflite"))
    cluster_graph(g, bits=4)
    with pytest.raises(TinyClusterError):
        write_clustered_tflite(shared_model("ad01_int8.tflite").read_bytes(), g)


@pytest.mark.parametrize("external", [False, True])
def test_hand_built_model_inline_and_external_buffers(external, tmp_path):
    """Weights inside the flatbuffer (read and rewritten in place) or after it (Buffer.offset/size:
    read there, and held inline in the clustered model, where TFLite Micro reads them)."""
    from ai_edge_litert.interpreter import Interpreter

    from tiny_tflite import fully_connected_model

    rng = np.random.default_rng(4)
    w = rng.integers(-127, 128, size=(6, 20)).astype(np.int8)
    bias = rng.integers(-3000, 3000, size=6).astype(np.int32)
    src = fully_connected_model(w, bias, external=external)
    p = tmp_path / "fc.tflite"
    p.write_bytes(src)
    g = load_tflite(p)
    assert np.array_equal(g.tensors[1].data, w) and np.array_equal(g.tensors[2].data, bias)
    cluster_graph(g, bits=2, granularity="per-channel")
    new = g.tensors[1].clustering.values()
    assert not np.array_equal(new, w)
    data = write_clustered_tflite(None, g, tmp_path / "fc_clustered.tflite")
    interp = Interpreter(model_content=data)
    interp.allocate_tensors()
    assert np.array_equal(interp.get_tensor(1), new)
    assert np.array_equal(interp.get_tensor(2), bias)
    if external:
        from tinycluster.importers.schema import read_model_t

        assert all(int(b.offset or 0) == 0 for b in read_model_t(data).buffers)
        return
    assert len(data) == len(src)
    # only the weight bytes changed
    diff = np.flatnonzero(np.frombuffer(src, np.uint8) != np.frombuffer(data, np.uint8))
    wpos = bytes(src).find(w.tobytes())
    assert wpos >= 0 and diff.min() >= wpos and diff.max() < wpos + w.size
