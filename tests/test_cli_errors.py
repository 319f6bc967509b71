"""Bad input: a one-line error, non-zero exit, no traceback, no output folder."""
import subprocess
import sys

import numpy as np
import pytest

from conftest import shared_model

CMD = [sys.executable, "-m", "tinycluster.cli"]


def run(args):
    return subprocess.run(CMD + args, capture_output=True, text=True, timeout=600)


def check_error(r, out, *needles):
    assert r.returncode != 0
    err = r.stderr.strip()
    assert "Traceback" not in r.stderr + r.stdout
    assert err.startswith("error:") or err.startswith("Error:"), err
    assert len(err.splitlines()) <= 3, err
    for n in needles:
        assert n.lower() in err.lower(), (n, err)
    assert not out.exists()
    assert not any(p.name.startswith(f".{out.name}.tmp") for p in out.parent.iterdir())


def test_missing_file(tmp_path):
    out = tmp_path / "o"
    check_error(run(["compile", str(tmp_path / "nope.tflite"), "-o", str(out)]), out, "nope.tflite")


def test_truncated_tflite(tmp_path):
    src = shared_model("kws_ref_model.tflite").read_bytes()
    bad = tmp_path / "trunc.tflite"
    bad.write_bytes(src[: len(src) // 3])
    out = tmp_path / "o"
    check_error(run(["compile", str(bad), "-o", str(out)]), out, "trunc.tflite")


def test_random_bytes(tmp_path):
    bad = tmp_path / "rand.tflite"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    out = tmp_path / "o"
    check_error(run(["compile", str(bad), "-o", str(out)]), out, "rand.tflite")


def test_float_model_without_calibration(tmp_path):
    out = tmp_path / "o"
    check_error(run(["compile", str(shared_model("kws_ref_model_float32.tflite")), "-o", str(out)]), out,
                "kws_ref_model_float32")


@pytest.mark.parametrize("args,needle", [(["--bits", "0"], "--bits"), (["--bits", "9"], "--bits"),
                                         (["--clusters", "300"], "--clusters"), (["--clusters", "1"], "--clusters")])
def test_out_of_range_options(tmp_path, args, needle):
    out = tmp_path / "o"
    check_error(run(["compile", str(shared_model("kws_ref_model.tflite")), "-o", str(out)] + args), out, needle)


def test_unsupported_op(tmp_path):
    """A model whose operator code is patched to LSTM: the error names the op, its index and the list."""
    import tflite

    data = bytearray(shared_model("kws_ref_model.tflite").read_bytes())
    model = tflite.Model.GetRootAsModel(data, 0)
    oc = model.OperatorCodes(0)
    # patch both the deprecated int8 code and the int32 code of operator code 0
    for slot, width in ((4, 1), (10, 4)):
        o = oc._tab.Offset(slot)
        if o:
            pos = oc._tab.Pos + o
            data[pos:pos + width] = int(tflite.BuiltinOperator.LSTM).to_bytes(width, "little", signed=True)
    bad = tmp_path / "lstm.tflite"
    bad.write_bytes(bytes(data))
    out = tmp_path / "o"
    r = run(["compile", str(bad), "-o", str(out)])
    check_error(r, out, "LSTM", "operator", "supported")


def test_existing_foreign_folder_is_not_replaced(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    r = run(["compile", str(shared_model("kws_ref_model.tflite")), "-o", str(out)])
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert (out / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("kind", ["shape", "dtype", "nan", "inf", "empty"])
def test_int8_compile_bad_calibration(tmp_path, kind):
    """compile X.tflite --calib F (int8 path): a wrong shape or dtype, NaN/inf values or an empty file
    is a one-line error naming the file and the expected input shape; nothing is written."""
    p = tmp_path / f"{kind}.npy"
    x = np.zeros((4, 49, 11 if kind == "shape" else 10, 1), np.uint8 if kind == "dtype" else np.float32)
    if kind in ("nan", "inf"):
        x[1, 2, 3, 0] = np.nan if kind == "nan" else np.inf
    if kind == "empty":
        p.write_bytes(b"")
    else:
        np.save(p, x)
    out = tmp_path / "o"
    r = run(["compile", str(shared_model("kws_ref_model.tflite")), "--bits", "4", "--calib", str(p), "-o", str(out)])
    check_error(r, out, p.name, "(N, 49, 10, 1)")
