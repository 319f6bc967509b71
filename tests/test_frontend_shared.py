"""The shared Keras models (../shared/models/*.h5) compile through the front end with
--calib-random 64 --bits 4, and the generated C is bit-exact with TFLite Micro on the result."""
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import shared_model

pytest.importorskip("tensorflow")

H5_MODELS = ["ad01.h5", "pretrainedResnet.h5", "vww_96.h5"]


@pytest.mark.slow
@pytest.mark.parametrize("model", H5_MODELS)
def test_shared_h5_compiles_at_4_bits_and_verifies(model, tmp_path):
    import tinycluster
    from tinycluster.frontends.pipeline import save_artifacts
    from tinycluster.verify import verify

    m = tinycluster.compile(shared_model(model), bits=4, granularity="per-channel",
                            frontend={"calib_random": 64}, quiet=True)
    fe = m.report["frontend"]
    assert fe["calibration"] == "random"
    assert all(layer["bits"] <= 4 for layer in fe["layers"])
    # the core packs what the front end clustered without changing a weight; a layer whose 4-bit
    # per-channel form (indices + 16 codebook entries per channel) would take more flash than its
    # int8 weights is kept as raw int8 (never larger than int8), and only then
    for layer in m.report["layers"]:
        if layer.get("weights"):
            assert layer["rms_error"] == 0.0, layer
            per_channel_4bit = (layer["weights"] * 4 + 7) // 8 + 16 * layer["output_channels"]
            if layer["index_bits"] > 4:
                assert layer["granularity"] == "raw int8" and per_channel_4bit > layer["weights"], layer
                assert layer["weight_flash_bytes"] == layer["weights"], layer
            else:
                assert layer["weight_flash_bytes"] <= layer["weights"], layer
    out = m.write(tmp_path / "out")
    save_artifacts(out, fe)
    r = verify(out, samples=8, seed=3)
    assert r["mismatches"] == 0, r


@pytest.mark.slow
def test_cli_keras_budget_and_errors(tmp_path):
    """CLI: a Keras model under --flash-budget stays within it; a budget below the floor is a
    one-line error, non-zero exit, no output folder."""
    model = shared_model("pretrainedResnet.h5")
    cmd = [sys.executable, "-m", "tinycluster.cli", "compile", str(model), "--calib-random", "16", "--quiet"]
    out = tmp_path / "b"
    r = subprocess.run(cmd + ["--flash-budget", "60KB", "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads((out / "report.json").read_text())
    assert rep["totals"]["flash_bytes"] <= 60000
    bad = tmp_path / "low"
    r = subprocess.run(cmd + ["--flash-budget", "5KB", "-o", str(bad)], capture_output=True, text=True)
    assert r.returncode != 0
    assert "smallest reachable size" in r.stderr and "Traceback" not in r.stderr
    assert not bad.exists()
