import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_MODELS = (REPO / ".." / "shared" / "models").resolve()
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str):
    """Skip when an external tool is absent, except in CI where its absence is a failure."""
    if shutil.which(name) is None:
        if IN_CI:
            pytest.fail(f"{name} is required in CI but not installed (.ci/run installs it)")
        pytest.skip(f"{name} not installed; install it to run this test")


def shared_model(name: str) -> Path:
    p = SHARED_MODELS / name
    if not p.exists():
        if IN_CI:
            pytest.fail(f"shared model {p} missing")
        pytest.skip(f"shared model {p} missing")
    return p


@pytest.fixture
def models_dir():
    return SHARED_MODELS
