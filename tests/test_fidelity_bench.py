"""The fidelity benchmark's cheap pieces: disjoint calibration/evaluation inputs, the partial-run merge,
the int8-path bookkeeping, and the TFLite Micro LUT peer's work-arounds (on kws, a few seconds)."""
import json
import sys

import numpy as np

from conftest import REPO, shared_model

sys.path.insert(0, str(REPO / "benchmarks"))

import fidelity  # noqa: E402
import tflm_lut  # noqa: E402


def test_calibration_and_evaluation_crops_never_overlap():
    shapes = [(427, 640), (427, 640)]  # scikit-learn's two sample images
    for seed in range(3):
        cal = fidelity.crop_plan(64, "calib", seed, shapes)
        ev = fidelity.crop_plan(200, "eval", seed + 1, shapes)
        for k, y, x, side, _ in cal + ev:
            h, w = shapes[k]
            assert 0 <= y and y + side <= h and 0 <= x and x + side <= w and side >= 64
        assert max(x + side for _, _, x, side, _ in cal) <= int(0.4 * 640)
        assert min(x for _, _, x, _, _ in ev) >= int(0.4 * 640)
    assert fidelity.crop_plan(5, "eval", 2, shapes) == fidelity.crop_plan(5, "eval", 2, shapes)  # seeded


def test_spectrogram_frames_fit_ad01_input_and_differ_by_seed():
    a, b = fidelity.spectrogram_frames(8, 1), fidelity.spectrogram_frames(8, 2)
    assert a.shape == (8, 640) and a.dtype == np.float32
    assert a.min() >= -80 and a.max() <= 10 and not np.array_equal(a, b)


def test_partial_runs_merge(tmp_path):
    p = tmp_path / "fidelity.json"
    p.write_text(json.dumps([{"model": "vww_96.h5", "x": 1}, {"model": "ad01.h5", "x": 2}]))  # pre-parts format
    data = fidelity.load_results(p)
    assert list(data["keras"]) == ["vww_96.h5", "ad01.h5"] and data["int8"] == {} and data["runs"] == []
    data = fidelity.merge(data, "keras", [{"model": "ad01.h5", "x": 3}])
    assert list(data["keras"]) == ["ad01.h5", "vww_96.h5"]  # the part's model order
    assert data["keras"]["ad01.h5"]["x"] == 3 and data["keras"]["vww_96.h5"]["x"] == 1  # only ad01 replaced
    data = fidelity.merge(data, "int8", [{"model": "vww_96_int8.tflite"}, {"model": "kws_ref_model.tflite"}])
    assert list(data["int8"]) == ["kws_ref_model.tflite", "vww_96_int8.tflite"]


def test_economy_bound_and_layers_larger_than_int8():
    report = {"layers": [
        {"layer": "conv", "weights": 1001, "biases": 8, "output_channels": 8, "flash_bytes": 700},
        {"layer": "dw", "weights": 72, "biases": 8, "output_channels": 8, "flash_bytes": 300},
        {"layer": "relu", "weights": 0, "flash_bytes": 20}]}
    # ceil(1001 * 4 / 8) + 4*8 + 5*8  +  36 + 32 + 40
    assert fidelity.economy_bound(report) == 501 + 72 + 36 + 72
    assert fidelity.larger_than_int8(report, {"conv": 1100, "dw": 190}) == ["dw"]
    assert fidelity.layer_flash(report) == {"conv": 700, "dw": 300}


def test_int8_inputs_without_data_are_verify_s_random_int8():
    """kws ships no data: evaluation inputs are verify's seeded random int8 (seed 0), calibration
    inputs other draws of the same distribution (seed 1), never the evaluation inputs."""
    from tinycluster.verify import make_inputs

    cal, xs, what = fidelity.int8_inputs("kws_ref_model.tflite", (1, 49, 10, 1), 5, 7)
    assert xs.shape == (7, 49, 10, 1) and xs.dtype == np.int8 and "random" in what
    assert np.array_equal(xs[3], make_inputs((1, 49, 10, 1), np.int8, 7, 0)[3].reshape(49, 10, 1))
    assert cal.shape == (5, 49, 10, 1) and cal.dtype == np.int8 and "seed 1" in what
    assert not any(np.array_equal(c, x) for c in cal for x in xs)


def test_tflm_lut_peer_on_kws():
    """The peer on kws' clustered model: the operator codes collapse as the docs say; with the
    work-arounds the LUT model runs under TFLite Micro and reproduces the clustered model exactly."""
    import tinycluster
    from tinycluster.verify import make_inputs

    cm = tinycluster.compile(shared_model("kws_ref_model.tflite"), bits=4)
    tfl = cm.clustered_tflite
    assert tflm_lut.collapsed_operator_codes(tfl)  # only deprecated_builtin_code is set in this file
    assert not tflm_lut.collapsed_operator_codes(tflm_lut.normalize_operator_codes(tfl))
    specs, rows = tflm_lut.lut_specs(tfl, fixed=True)
    # one quantization scale: a per-tensor table (a per-channel one would decode wrongly). The source
    # model's FC weights have one scale; the clustered model's may carry per-channel scales (the
    # normalized layout), and then take per-channel tables
    n_scales = {int(tid): n for tid, _, _, n in tflm_lut.weight_tensors(tfl)}
    for r in rows:
        assert r["mode"] == ("per-tensor" if n_scales[r["tensor"]] == 1 else "per-channel"), r
    src_rows = tflm_lut.lut_specs(shared_model("kws_ref_model.tflite").read_bytes(), fixed=True)[1]
    assert [r["mode"] for r in src_rows if r["shape"] == [12, 64]] == ["per-tensor"]
    assert all(r["lut_bytes"] < r["int8_bytes"] for r in rows if "skipped" not in r)
    xs = make_inputs((1, 49, 10, 1), np.int8, 4, 0)[:4]
    res = tflm_lut.measure(tfl, xs)
    assert res["fixed"]["runs"] and res["fixed"]["outputs_identical"], res["fixed"].get("tflm_error")
    assert res["fixed"]["bytes"] == len(tflm_lut.compress(tflm_lut.normalize_operator_codes(tfl), specs)[0])
    assert res["as_user"]["compressed_tensors"] == len(rows)


def test_paired_difference_and_the_one_point_check():
    a = np.array([1] * 930 + [0] * 70, bool)
    b = np.array([1] * 900 + [0] * 100, bool)
    d = fidelity.paired_difference(a, b)
    assert abs(d["difference"] - 0.03) < 1e-12 and d["discordant"] == 30 and d["n"] == 1000
    assert d["ci95"][0] <= 0.03 <= d["ci95"][1] and d["ci95"][0] > 0  # b is never right where a is wrong
    res = {"model": "m.h5", "bits": 6, "evaluation_samples": 1000, "difference": d,
           "rows": {"int8": {"agreement": 0.94}, "6": {"agreement": 0.93}}}
    assert fidelity.agreement_checks(res)[0][1]  # exactly 1 point below: within
    res["rows"]["6"]["agreement"] = 0.929
    assert not fidelity.agreement_checks(res)[0][1]
