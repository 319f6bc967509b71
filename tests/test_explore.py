"""`tinycluster explore`: Pareto logic, a bounded sweep on small models, and bad input."""
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import shared_model
from test_cli_errors import check_error  # one-line error, no traceback, no output folder

CMD = [sys.executable, "-m", "tinycluster.cli"]


# ------------------------------------------------------------------------------ Pareto logic
def test_dominated_point_is_never_on_the_front():
    from tinycluster.explore import dominates, pareto_flags

    rng = np.random.default_rng(0)
    for trial in range(200):
        n, d = int(rng.integers(1, 25)), int(rng.integers(2, 5))
        objs = [tuple(float(v) for v in row) for row in rng.integers(0, 6, size=(n, d))]  # many ties
        flags = pareto_flags(objs)
        for i, o in enumerate(objs):
            dominated = any(dominates(p, o) for p in objs)
            assert flags[i] == (not dominated), (objs, i)
        assert any(flags)  # a finite set always has a non-dominated point


def test_dominance_rules():
    from tinycluster.explore import dominates, objectives, pareto_flags

    assert dominates((1, 1, -5), (2, 1, -5))
    assert not dominates((1, 1, -5), (1, 1, -5))  # equal: neither dominates, both stay
    assert pareto_flags([(1, 1, -5), (1, 1, -5)]) == [True, True]
    assert not dominates((1, 2, -9), (2, 1, -5))  # a trade-off
    # identical outputs count as infinite SNR: better than any finite SNR at the same cost
    a = {"flash_bytes": 10, "sram_bytes": 5, "outputs_identical": True, "snr_db_vs_int8": None,
         "top1_agreement_vs_int8": 1.0}
    b = {"flash_bytes": 10, "sram_bytes": 5, "outputs_identical": False, "snr_db_vs_int8": 80.0,
         "top1_agreement_vs_int8": 1.0}
    assert dominates(objectives(a, True), objectives(b, True))
    # top-1 counts only for classifiers
    c = dict(b, top1_agreement_vs_int8=0.5)
    assert dominates(objectives(b, True), objectives(c, True))
    assert not dominates(objectives(b, False), objectives(c, False))


def test_layouts_come_from_the_clustering_pass():
    from tinycluster.compress.cluster import GRANULARITIES
    from tinycluster.explore import layouts

    assert layouts() == tuple(GRANULARITIES)


def test_model_inputs_quantize_like_tflite(tmp_path):
    from tiny_tflite import fully_connected_model
    from tinycluster.errors import TinyClusterError
    from tinycluster.evaluate import TFLiteRunner, model_inputs

    m = TFLiteRunner(fully_connected_model(np.ones((2, 3), np.int8), np.zeros(2, np.int32), in_q=(0.5, -3)))
    q = model_inputs(np.array([[0.0, 1.24, 1000.0], [-0.26, -1000.0, 0.76]], np.float32), m, "x.npy")
    assert q.dtype == np.int8
    assert q.tolist() == [[-3, -1, 127], [-4, -128, -1]]  # round(x / 0.5) - 3, saturated
    raw = np.array([[1, 2, 3]], np.int8)
    assert model_inputs(raw, m, "x.npy") is raw  # int8: already quantized
    assert model_inputs(raw[0], m, "x.npy").shape == (1, 3)  # one input without the batch axis
    for bad, needle in ((np.zeros((2, 4), np.float32), "(N, 3)"), (np.array([[np.nan, 0, 0]]), "NaN"),
                        (np.zeros((2, 3), np.uint8), "dtype uint8"), (np.zeros((0, 3), np.float32), "(N, 3)")):
        with pytest.raises(TinyClusterError, match="x.npy") as e:
            model_inputs(bad, m, "x.npy")
        assert needle in str(e.value)
    assert m.input_float_range == (0.5 * (-128 + 3), 0.5 * (127 + 3))


# ------------------------------------------------------------------------------ sweeps
def _check_result(res, out):
    pts = res["points"]
    assert sum(p["default"] for p in pts) == 1
    objs = [__import__("tinycluster.explore", fromlist=["objectives"]).objectives(p, res["classifier"]) for p in pts]
    from tinycluster.explore import dominates

    for p, o in zip(pts, objs):
        assert p["pareto"] == (not any(dominates(o2, o) for o2 in objs)), p["label"]
    assert [p["flash_bytes"] for p in pts] == sorted(p["flash_bytes"] for p in pts)
    assert json.loads((out / "explore.json").read_text())["points"] == pts
    md = (out / "explore.md").read_text()
    assert "<- default" in md and "Pareto" in md
    return pts


def test_explore_kws_bounded(tmp_path):
    """kws, 2 widths x every layout + lossless: flash and SRAM are compile's own totals, the default
    is the auto 4-bit point, 8 bit... (the 2-bit per-tensor model is the smallest)."""
    import tinycluster
    from tinycluster.explore import explore, layouts, write

    model = shared_model("kws_ref_model.tflite")
    res = explore(model, bits=[2, 4], samples=20, quiet=True, command="test")
    out, note = write(res, tmp_path / "ex")
    pts = _check_result(res, out)
    assert res["classifier"] is True and res["evaluation"]["source"] == "random"
    assert res["evaluation"]["samples"] == 20
    assert "random" in (out / "explore.md").read_text()
    assert len(pts) == 2 * len(layouts()) + len(layouts())  # widths x layouts + lossless per layout
    assert {p["layout"] for p in pts} == set(layouts())
    by = {p["label"]: p for p in pts}
    d = tinycluster.compile(model)
    default = next(p for p in pts if p["default"])
    assert default["flash_bytes"] == d.report["totals"]["flash_bytes"]
    assert default["sram_bytes"] == d.report["totals"]["sram_bytes"]
    pt2 = tinycluster.compile(model, bits=2, granularity="per-tensor").report["totals"]
    assert by["per-tensor 2 bit"]["flash_bytes"] == pt2["flash_bytes"]
    assert min(p["flash_bytes"] for p in pts) == pt2["flash_bytes"]
    for p in pts:
        if p["lossless"]:
            assert p["outputs_identical"] and p["top1_agreement_vs_int8"] == 1.0
        else:
            assert not p["outputs_identical"] and 0.0 <= p["top1_agreement_vs_int8"] <= 1.0
    assert (out / "explore.png").exists() == (note is None)


def test_explore_non_classifier_and_held_out_calibration(tmp_path):
    """A one-FC model (output not a SOFTMAX): no top-1 column; --calib is split in halves, the evaluation
    runs on the held-out half (int8 arrays as they are)."""
    from tiny_tflite import fully_connected_model
    from tinycluster.explore import explore, write

    rng = np.random.default_rng(1)
    m = tmp_path / "fc.tflite"
    m.write_bytes(fully_connected_model(rng.integers(-127, 128, (16, 24)).astype(np.int8),
                                        rng.integers(-500, 500, 16).astype(np.int32)))
    cal = tmp_path / "cal.npy"
    np.save(cal, rng.integers(-128, 128, (10, 24)).astype(np.int8))
    res = explore(m, calib=cal, bits=[1, 3], budgets=None, quiet=True, command="test")
    out, _ = write(res, tmp_path / "ex")
    pts = _check_result(res, out)
    assert res["classifier"] is False and all(p["top1_agreement_vs_int8"] is None for p in pts)
    assert res["evaluation"]["source"] == "calib-held-out" and res["evaluation"]["samples"] == 5
    assert "top-1" not in (out / "explore.md").read_text().split("## All points")[1]
    # re-running into the same folder replaces it (an explore folder), atomically
    out2, _ = write(res, tmp_path / "ex")
    assert out2 == out and not [p for p in tmp_path.iterdir() if p.name.startswith(".ex.")]


def test_plot_skipped_without_matplotlib(tmp_path, monkeypatch):
    from tinycluster.explore import write

    res = {"model": "m.tflite", "command": "c", "version": "0", "seconds": 1, "reference": "r",
           "interpreter": "TFLite Micro", "evaluation": {"inputs": "i", "samples": 1, "source": "random"},
           "classifier": False, "objectives": ["flash"], "notes": [], "int8_weight_bytes": 10,
           "default": {"label": "a", "command": "c", "options": {}},
           "points": [{"label": "a", "layout": "auto", "bits": 4, "lossless": False, "flash_bytes": 5,
                       "sram_bytes": 3, "codebook_sram_bytes": 0, "bits_per_weight": 4.0, "snr_db_vs_int8": 9.0,
                       "outputs_identical": False, "top1_agreement_vs_int8": None, "pareto": True,
                       "default": True, "digest": "x", "command": "c"}]}
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    out, note = write(res, tmp_path / "ex")
    assert note and "matplotlib" in note
    assert not (out / "explore.png").exists() and "explore.png" not in (out / "explore.md").read_text()


# ------------------------------------------------------------------------------ bad input
def run(args):
    return subprocess.run(CMD + ["explore"] + args, capture_output=True, text=True, timeout=600)


def _bad_calib(tmp_path, kind):
    p = tmp_path / f"{kind}.npy"
    if kind == "shape":
        np.save(p, np.zeros((8, 49, 11, 1), np.float32))
    elif kind == "nan":
        a = np.zeros((8, 49, 10, 1), np.float32)
        a[3, 2, 1, 0] = np.nan
        np.save(p, a)
    elif kind == "dtype":
        np.save(p, np.zeros((8, 49, 10, 1), np.uint8))
    elif kind == "empty":
        p.write_bytes(b"")
    return p


@pytest.mark.parametrize("kind,needles", [("shape", ["shape.npy", "(N, 49, 10, 1)"]),
                                          ("nan", ["nan.npy", "NaN"]),
                                          ("dtype", ["dtype.npy", "uint8"]),
                                          ("empty", ["empty.npy"])])
def test_bad_calibration(tmp_path, kind, needles):
    out = tmp_path / "o"
    r = run([str(shared_model("kws_ref_model.tflite")), "-o", str(out), "--calib", str(_bad_calib(tmp_path, kind)),
             "--bits", "4"])
    check_error(r, out, *needles)


@pytest.mark.parametrize("args,needle", [(["--bits", "0"], "--bits"), (["--bits", "x"], "--bits"),
                                         (["--bits", "9"], "--bits"), (["--layouts", "diagonal"], "--layouts"),
                                         (["--samples", "0"], "--samples"),
                                         (["--flash-budget", "lots"], "lots"),
                                         (["--flash-budget", "20000", "--no-budgets"], "--no-budgets")])
def test_bad_options(tmp_path, args, needle):
    out = tmp_path / "o"
    check_error(run([str(shared_model("kws_ref_model.tflite")), "-o", str(out)] + args), out, needle)


def test_missing_model_and_foreign_output_folder(tmp_path):
    out = tmp_path / "o"
    check_error(run([str(tmp_path / "nope.tflite"), "-o", str(out)]), out, "nope.tflite")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    r = run([str(shared_model("kws_ref_model.tflite")), "-o", str(foreign), "--bits", "4"])
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error:") and "not a tinycluster output folder" in r.stderr
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temp folder left
    r = run([str(shared_model("kws_ref_model.tflite")), "-o", str(out), "--eval", str(foreign / "notes.txt")])
    check_error(r, out, "--eval needs --calib")


def test_a_point_compile_refuses_is_a_note_not_the_end(tmp_path, monkeypatch):
    import tinycluster
    from tiny_tflite import fully_connected_model
    from tinycluster.errors import TinyClusterError
    from tinycluster.explore import explore

    rng = np.random.default_rng(2)
    m = tmp_path / "fc.tflite"
    m.write_bytes(fully_connected_model(rng.integers(-127, 128, (8, 16)).astype(np.int8),
                                        rng.integers(-50, 50, 8).astype(np.int32)))
    real = tinycluster.compile

    def fake(model, **kw):
        if kw.get("bits") == 2 and kw.get("granularity") == "per-tensor":
            raise TinyClusterError(f"{model}: refused for the test")
        return real(model, **kw)

    monkeypatch.setattr(tinycluster, "compile", fake)
    res = explore(m, bits=[2, 3], lossless=False, budgets=None, samples=5, quiet=True)
    assert "per-tensor 2 bit" not in {p["label"] for p in res["points"]}
    assert "per-tensor 3 bit" in {p["label"] for p in res["points"]}
    assert any("per-tensor 2 bit skipped" in n and "refused for the test" in n for n in res["notes"])
