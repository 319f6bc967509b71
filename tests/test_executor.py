"""The numpy graph executor (handler references) against TFLite Micro on the shared models,
original and clustered: the references must be bit-exact for the executor to be a debugging aid."""
import numpy as np
import pytest

from tinycluster.compress.cluster import cluster_graph
from tinycluster.errors import TinyClusterError
from tinycluster.executor import run_graph
from tinycluster.export.tflite_writer import write_clustered_tflite
from tinycluster.importers.tflite import load_tflite, resolve_graph

from conftest import shared_model

MODELS = ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "vww_96_int8.tflite", "ad01_int8.tflite"]


def _inputs(shape, n, seed):
    rng = np.random.default_rng(seed)
    xs = [rng.integers(-128, 128, size=shape, dtype=np.int64).astype(np.int8) for _ in range(n)]
    return xs + [np.full(shape, -128, np.int8), np.full(shape, 127, np.int8), np.zeros(shape, np.int8)]


def _tflm(data: bytes):
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(data, arena_size=4 << 20)

    def run(x):
        interp.set_input(x, 0)
        interp.invoke()
        return interp.get_output(0).copy()

    return run


@pytest.mark.slow
@pytest.mark.parametrize("setting", [None, dict(bits=4), dict(bits=3, granularity="per-tensor")])
@pytest.mark.parametrize("model", MODELS)
def test_run_graph_matches_tflm(model, setting):
    path = shared_model(model)
    g = resolve_graph(load_tflite(path))
    if setting is not None:
        cluster_graph(g, **setting)
        data = write_clustered_tflite(None, g)
    else:
        data = path.read_bytes()
    ref = _tflm(data)
    shape = g.tensors[g.inputs[0]].shape
    for i, x in enumerate(_inputs(shape, 2, seed=11)):
        want = ref(x)
        got = run_graph(g, x)
        assert got.dtype == want.dtype and got.shape == want.shape
        bad = np.flatnonzero(got.reshape(-1) != want.reshape(-1))
        assert bad.size == 0, f"input {i}: {bad.size} of {want.size} outputs differ, first at {bad[:5]}"


def test_run_graph_returns_every_tensor_and_checks_inputs():
    g = resolve_graph(load_tflite(shared_model("kws_ref_model.tflite")))
    x = np.zeros(g.tensors[g.inputs[0]].shape, np.int8)
    vals = run_graph(g, x, return_all=True)
    for n in g.nodes:
        for tid in n.outputs:
            assert vals[tid].shape == tuple(g.tensors[tid].shape)
    assert np.array_equal(vals[g.outputs[0]], run_graph(g, x.reshape(-1)))
    with pytest.raises(TinyClusterError):
        run_graph(g, np.zeros(3, np.int8))
    with pytest.raises(TinyClusterError):
        run_graph(g, np.full(x.shape, 300))
