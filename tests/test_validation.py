"""Regressions of the fuzzing campaigns (docs/validation.md): each model is generated here with
the schema's object API (tests/fuzz_engine.py), never committed, and goes through the real command
line in this process. A refusal must be one line naming the file and the rule, with nothing
written; an accepted model must verify bit-exact against TFLite Micro."""
import json
import zipfile

import numpy as np
import pytest

from fuzz_engine import ModelBuilder, _b, _job_cli, _w, classify_error, seed_conv_chain, seed_elementwise, seed_mlp
from tinycluster.importers.schema import read_model_t, write_model_t


def compile_cli(tmp_path, data: bytes, *args, name="m"):
    """(exit code, stderr, model path, output folder) of `tinycluster compile` on ``data``."""
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(data)
    out = tmp_path / f"{name}_out"
    code, _, err = _job_cli(["compile", str(path), "-o", str(out), "--quiet", *args])
    return code, err, path, out


def assert_refused(code, err, path, out, *needles, named=None):
    """``named``: the file the message must name (default: the model)."""
    kind, msg = classify_error(code, "", err, named or path, out)
    assert kind == "rejected", (kind, msg)
    for n in needles:
        assert n in msg, (n, msg)
    return msg


def assert_bit_exact(out):
    code, stdout, err = _job_cli(["verify", str(out), "--samples", "2"])
    assert code == 0 and " 0 mismatching outputs" in stdout, (code, stdout, err)


def test_builtin_op_with_custom_options_is_refused(tmp_path):
    # TFLite Micro refuses a builtin operator that carries custom_options; tinycluster compiled it
    m = read_model_t(seed_elementwise())
    m.subgraphs[0].operators[1].customOptions = [1, 2, 3]
    r = compile_cli(tmp_path, write_model_t(m), "--bits", "4")
    assert_refused(*r, "operator 1 (ADD)", "custom options")


def two_fc_sharing_weights() -> bytes:
    """x [1, 32] -> FC (w1 [32, 32], per-channel scales) -> FC (w2: the same int8 data in the same
    buffer, one scale): clustered in real units, the two get different int8 values."""
    rng = np.random.default_rng(4)
    b = ModelBuilder()
    x = b.tensor("x", [1, 32], q=(0.05, 0))
    w = _w(rng, (32, 32))
    w1 = b.tensor("w1", [32, 32], q=(np.geomspace(0.001, 0.03, 32), [0] * 32), data=w)
    b1 = b.tensor("b1", [32], "INT32", q=(0.05 * np.geomspace(0.001, 0.03, 32), [0] * 32), data=_b(rng, 32))
    h = b.tensor("h", [1, 32], q=(0.3, -3))
    b.op("FULLY_CONNECTED", [x, w1, b1], [h], "FullyConnectedOptions", fusedActivationFunction=1)
    w2 = b.tensor("w2", [32, 32], q=(0.02, 0), data=w)
    y = b.tensor("y", [1, 32], q=(0.5, 4))
    b.op("FULLY_CONNECTED", [h, w2, -1], [y], "FullyConnectedOptions")
    b.tensors[w2].buffer = b.tensors[w1].buffer  # the converter deduplicates identical constants so
    return b.finish([x], [y])


def test_shared_weight_buffer_gets_its_own_buffer(tmp_path):
    # two weight tensors sharing one buffer, clustered differently: the clustered .tflite used to be
    # refused ("cannot hold both")
    code, err, path, out = compile_cli(tmp_path, two_fc_sharing_weights(), "--bits", "2", "--granularity", "per-tensor")
    assert code == 0, err
    rep = json.loads((out / "report.json").read_text())
    clustered = read_model_t((out / f"{rep['name']}_clustered.tflite").read_bytes())
    t = clustered.subgraphs[0].tensors
    bufs = [np.asarray(clustered.buffers[t[i].buffer].data, np.uint8).tobytes() for i in (1, 4)]
    assert t[1].buffer != t[4].buffer and bufs[0] != bufs[1], "the test needs differently clustered tensors"
    assert_bit_exact(out)


def test_batch_of_two_input_takes_calibration_of_whole_inputs(tmp_path):
    # seed_mlp's input is [2, 12]: one calibration sample is a [2, 12] input, not a row of 12
    npy = tmp_path / "rows.npy"
    np.save(npy, np.zeros((4, 12), np.float32))
    r = compile_cli(tmp_path, seed_mlp(), "--bits", "3", "--calib", str(npy))
    assert_refused(*r, "(N, 2, 12)", named=npy)
    np.save(npy, np.random.default_rng(0).uniform(-5, 5, (3, 2, 12)).astype(np.float32))
    code, err, path, out = compile_cli(tmp_path, seed_mlp(), "--bits", "3", "--calib", str(npy))
    assert code == 0, err
    assert json.loads((out / "report.json").read_text())["clustering"]["calibration_inputs"] == 3
    assert_bit_exact(out)


def test_float_interface_model_uses_calibration(tmp_path):
    # float input -> QUANTIZE -> int8 ops: --calib used to be ignored without a word
    npy = tmp_path / "real.npy"
    np.save(npy, np.random.default_rng(1).uniform(-2, 2, (4, 8, 8, 3)).astype(np.float32))
    code, err, path, out = compile_cli(tmp_path, seed_conv_chain(), "--bits", "3", "--calib", str(npy))
    assert code == 0, err
    rep = json.loads((out / "report.json").read_text())
    assert rep["clustering"]["calibration_inputs"] == 4 and rep["clustering"]["method"].startswith("output-aware")
    assert_bit_exact(out)
    np.save(npy, np.zeros((4, 8, 8, 3), np.int8))  # int8 data for a float input: which scale?
    r = compile_cli(tmp_path, seed_conv_chain(), "--bits", "3", "--calib", str(npy), name="m2")
    assert_refused(*r, "dtype int8", named=npy)


def _bad_calibration_files(tmp_path):
    files = {}
    (tmp_path / "text.npy").write_text("1,2,3\n")
    files["text.npy"] = "not a NumPy array file"
    np.save(tmp_path / "objects.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    files["objects.npy"] = "Python objects"
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04" + bytes(range(200)))
    files["garbage.npz"] = "not a valid .npz"
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((2, 8, 8, 3), np.float32))
    (tmp_path / "truncated.npy").write_bytes(good.read_bytes()[:100])
    files["truncated.npy"] = "truncated"
    (tmp_path / "folder.npy").mkdir()
    files["folder.npy"] = "is a directory"
    with zipfile.ZipFile(tmp_path / "member.npz", "w") as z:
        z.writestr("x.npy", b"not an array")
    files["member.npz"] = "member.npz"
    return files


def test_unreadable_calibration_files(tmp_path):
    model = tmp_path / "chain.tflite"
    model.write_bytes(seed_conv_chain())
    for name, needle in _bad_calibration_files(tmp_path).items():
        out = tmp_path / "o"
        code, _, err = _job_cli(["compile", str(model), "-o", str(out), "--quiet", "--calib", str(tmp_path / name)])
        msg = assert_refused(code, err, model, out, needle, named=tmp_path / name)
        assert "allow_pickle" not in msg and "numpy" not in msg.replace("numpy.save", ""), msg


def test_explore_refuses_misshaped_calibration(tmp_path):
    model = tmp_path / "mlp.tflite"
    model.write_bytes(seed_mlp())
    npy = tmp_path / "rows.npy"
    np.save(npy, np.zeros((4, 12), np.float32))  # rows of a [2, 12] input: used to be an internal error
    out = tmp_path / "x"
    code, _, err = _job_cli(["explore", str(model), "-o", str(out), "--quiet", "--bits", "2", "--calib", str(npy)])
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and "rows.npy" in lines[0], err
    assert "(N, 2, 12)" in lines[0], lines[0]
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".x")]


@pytest.mark.parametrize("mutate,needle", [
    (lambda m: setattr(m.operatorCodes[0], "customCode", "X") or setattr(m.operatorCodes[0], "builtinCode", 32)
     or setattr(m.operatorCodes[0], "deprecatedBuiltinCode", 32), "CUSTOM(X)"),
    # a custom code with a newline used to break the one-line error
    (lambda m: setattr(m.operatorCodes[0], "customCode", "conv\n2d") or setattr(m.operatorCodes[0], "builtinCode", 32)
     or setattr(m.operatorCodes[0], "deprecatedBuiltinCode", 32), "CUSTOM(conv?2d)"),
])
def test_unknown_ops_are_named(tmp_path, mutate, needle):
    m = read_model_t(seed_mlp())
    mutate(m)
    assert_refused(*compile_cli(tmp_path, write_model_t(m), "--bits", "4"), needle)


def test_depthwise_bias_of_minus_one_is_refused(tmp_path):
    # TFLite Micro crashes (SIGSEGV) on a three-input depthwise conv whose bias index is -1; a
    # two-input depthwise (no bias) runs, and so does a conv or FC with a -1 bias
    m = read_model_t(seed_conv_chain())
    dw = m.subgraphs[0].operators[2]
    dw.inputs = list(dw.inputs[:2]) + [-1]
    assert_refused(*compile_cli(tmp_path, write_model_t(m), "--bits", "4"), "operator 2 (DEPTHWISE_CONV_2D)",
                   "bias input is -1")
    dw.inputs = list(dw.inputs[:2])
    code, err, _, out = compile_cli(tmp_path, write_model_t(m), "--bits", "4", name="two_inputs")
    assert code == 0, err
    assert_bit_exact(out)


def _external(data: bytes, tensor: int, inside: bool) -> bytes:
    """``data`` with tensor ``tensor``'s buffer stored by offset and size: after the flatbuffer (as
    the converter writes models over 2 GB), or (``inside``) pointing into the flatbuffer's tables."""
    m = read_model_t(data)
    t = m.subgraphs[0].tensors[tensor]
    buf = m.buffers[t.buffer]
    raw = np.asarray(buf.data, np.uint8).tobytes()
    buf.data, buf.offset, buf.size = None, 1 << 40, len(raw)
    n = len(write_model_t(m))
    buf.offset = 64 if inside else (n + 15) // 16 * 16
    fb = write_model_t(m)
    return fb if inside else fb + bytes(buf.offset - n) + raw


@pytest.mark.parametrize("inside,granularity", [(False, "per-channel"), (False, "normalized"), (True, "per-channel")])
def test_external_buffers_are_written_inline(tmp_path, inside, granularity):
    # the clustered copy of a model with an offset/size buffer used to lose the bytes after the
    # flatbuffer (object API rewrite: normalized scales) or write clustered weights over the
    # tables (in place, a buffer pointing into them); TFLite Micro reads only inline buffers
    src = _external(seed_conv_chain(), 2, inside)
    code, err, _, out = compile_cli(tmp_path, src, "--bits", "3", "--granularity", granularity)
    assert code == 0, err
    rep = json.loads((out / "report.json").read_text())
    clustered = read_model_t((out / f"{rep['name']}_clustered.tflite").read_bytes())
    assert all(int(b.offset or 0) == 0 for b in clustered.buffers)
    assert_bit_exact(out)


def test_logistic_tanh_input_scale_beyond_kernel_range_is_refused(tmp_path):
    # TFLite Micro computes 1LL << shift in CalculateInputRadius: undefined for a scale of 3.4e38
    # (the installed interpreter gave other bytes)
    m = read_model_t(seed_mlp())
    m.subgraphs[0].tensors[5].quantization.scale = [3.4e38]
    assert_refused(*compile_cli(tmp_path, write_model_t(m), "--bits", "8"), "operator 2 (TANH)", "too large")


def test_data_in_buffer_zero_is_refused(tmp_path):
    # TFLite Micro takes buffer 0's bytes as the data of every activation (they refer to it): the C
    # computed the model, TFLite Micro something else
    m = read_model_t(seed_mlp())
    m.buffers[0].data = np.arange(3, dtype=np.uint8)
    assert_refused(*compile_cli(tmp_path, write_model_t(m), "--bits", "4"), "buffer 0 holds 3 bytes")


def test_intermediate_tensors_of_nonzero_size_are_refused(tmp_path):
    # TFLite Micro: "Does not support intermediate tensor with non-zero size"
    m = read_model_t(seed_mlp())
    m.subgraphs[0].operators[0].intermediates = [3]
    assert_refused(*compile_cli(tmp_path, write_model_t(m), "--bits", "4"), "operator 0 (FULLY_CONNECTED)",
                   "intermediate tensor 3")
