"""End to end on the shared MLPerf Tiny models: compile, build for the host, compare with TFLite Micro."""
import json
import subprocess
import sys

import numpy as np
import pytest

import tinycluster
from tinycluster.verify import tflm_arena_head, verify

from conftest import shared_model

MODELS = ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "vww_96_int8.tflite", "ad01_int8.tflite"]
SETTINGS = {"bits8": dict(bits=8), "bits4": dict(bits=4), "bits3": dict(bits=3), "lossless": dict(lossless=True)}


@pytest.mark.slow
@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("model", MODELS)
def test_bit_exact_with_tflm(model, setting, tmp_path):
    m = tinycluster.compile(shared_model(model), **SETTINGS[setting])
    out = m.write(tmp_path / "out")
    r = verify(out, samples=20, seed=1)
    assert r["samples"] == 23
    assert r["mismatches"] == 0, r
    written = json.loads((out / "verify.json").read_text())
    assert written["mismatches"] == 0 and written["reference"] == "tflm"


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_8bit_is_lossless(model):
    """8-bit clustering of an int8 model keeps every weight: the clustered model is the original."""
    src = shared_model(model).read_bytes()
    m = tinycluster.compile(shared_model(model), bits=8)
    assert m.clustered_tflite == src
    for layer in m.report["layers"]:
        if layer["weights"]:
            assert layer["unique_after"] == layer["unique_before"]


@pytest.mark.slow
@pytest.mark.parametrize("model,ratio", [("kws_ref_model.tflite", 0.9), ("pretrainedResnet_quant.tflite", 0.9),
                                         ("vww_96_int8.tflite", 0.9), ("ad01_int8.tflite", 1.0)])
def test_arena_beats_tflm(model, ratio):
    path = shared_model(model)
    head = tflm_arena_head(path.read_bytes())
    m = tinycluster.compile(path, bits=4)
    arena = m.report["totals"]["arena_bytes"]
    assert arena <= ratio * head, f"arena {arena} B vs TFLM head {head} B"


def test_cli_compile_and_verify(tmp_path):
    out = tmp_path / "kws"
    cmd = [sys.executable, "-m", "tinycluster.cli"]
    r = subprocess.run(cmd + ["compile", str(shared_model("kws_ref_model.tflite")), "--bits", "4", "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for fn in ["kws_ref_model.c", "kws_ref_model.h", "report.json", "report.md", "kws_ref_model_clustered.tflite"]:
        assert (out / fn).exists(), fn
    head = (out / "kws_ref_model.c").read_text().splitlines()[:4]
    assert any("tinycluster " + tinycluster.__version__ in ln for ln in head)
    assert any("--bits 4" in ln for ln in head)
    r = subprocess.run(cmd + ["verify", str(out), "--samples", "30"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    v = json.loads((out / "verify.json").read_text())
    assert v["samples"] == 33 and v["mismatches"] == 0
    assert set(v) >= {"reference", "samples", "mismatches", "host_invoke_us", "tflm_invoke_us"}


def test_verify_detects_a_wrong_model(tmp_path):
    """verify must fail when the C and the reference disagree (here: a corrupted codebook)."""
    m = tinycluster.compile(shared_model("kws_ref_model.tflite"), bits=4, granularity="per-tensor", codebooks="flash")
    out = m.write(tmp_path / "kws")
    c = (out / "kws_ref_model.c").read_text()
    i = c.index("_cb")  # first codebook array
    j = c.index("{", i) + 1
    k = c.index(",", j)
    first = int(c[j:k].strip())
    c = c[:j] + f"\n    {-first if first != 0 else 5}" + c[k:]
    (out / "kws_ref_model.c").write_text(c)
    r = verify(out, samples=5)
    assert r["mismatches"] > 0
