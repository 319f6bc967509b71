"""examples/digits end to end: the issue's accuracy claims, measured under TFLite Micro."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("sklearn")

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_digits_example(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "examples" / "digits" / "run.py"), "--out", str(tmp_path),
                        "--quiet"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "results.json").read_text())
    for key in ("float_acc", "int8_acc", "bits4_acc", "bits2_heal_acc", "budget_acc"):
        assert 0.0 <= res[key] <= 1.0
    for key in ("int8_flash_bytes", "bits4_flash_bytes", "bits2_heal_flash_bytes", "budget_flash_bytes"):
        assert res[key] > 0
    assert res["int8_acc"] >= 0.9
    assert res["int8_acc"] - res["bits4_acc"] <= 0.005  # 4-bit, no retraining: <= 0.5 points
    assert res["int8_acc"] - res["bits2_heal_acc"] <= 0.015  # 2-bit with healing: <= 1.5 points
    assert res["budget_flash_bytes"] <= res["budget_bytes"]
    assert res["bits2_heal_flash_bytes"] < res["bits4_flash_bytes"] < res["int8_flash_bytes"]
    assert "bits4" in r.stdout and "budget" in r.stdout  # the printed table
