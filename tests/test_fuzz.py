"""Structure-aware fuzzing in CI (see tests/fuzz_engine.py): mutants of the shared models and of
small synthetic models covering every supported op, through the real command line.

Each mutant must give a one-line error naming the file (no traceback, no dependency text, nothing
written) or compile and verify bit-exact against TFLite Micro; a model TFLite Micro refuses must
be refused by tinycluster too; hangs and crashes are failures. The seed is fixed per CI run
(``TC_FUZZ_SEED`` picks another, ``TC_FUZZ_MUTANTS`` another count); ``make fuzz`` runs a larger
campaign (benchmarks/fuzz.py). Failing mutants are kept for reproduction (the assertion message
says where)."""
import json
import os

import pytest

from conftest import IN_CI, SHARED_MODELS
from fuzz_engine import DEFAULT_WEIGHTS, OK_KINDS, run_campaign

SEED = int(os.environ.get("TC_FUZZ_SEED", "1101"))
MUTANTS = int(os.environ.get("TC_FUZZ_MUTANTS", "300"))
TIME_LIMIT = float(os.environ.get("TC_FUZZ_TIME_LIMIT", "90"))  # seconds per compile / verify / TFLM step


@pytest.mark.slow
def test_fuzz_mutants(tmp_path):
    missing = [m for m in DEFAULT_WEIGHTS if m.endswith(".tflite") and not (SHARED_MODELS / m).exists()]
    if missing:
        if IN_CI:
            pytest.fail(f"shared models missing: {missing}")
        pytest.skip(f"shared models missing: {missing}")
    keep = tmp_path / "failures"
    r = run_campaign(MUTANTS, SEED, tmp_path / "work", time_limit=TIME_LIMIT, verify_samples=2, keep_failures=keep,
                     log=lambda s: None)
    counts = r["counts"]
    print(f"fuzz seed {SEED}: {MUTANTS} mutants in {r['seconds']} s: {json.dumps(counts, sort_keys=True)}")
    assert sum(counts.values()) == MUTANTS
    lines = [f"[{f['index']}] {f['seed']}: {f['mutation']} -> {f['kind']}: {f.get('detail', '')[:400]}"
             for f in r["failures"]]
    assert not r["failures"], (f"{len(r['failures'])} of {MUTANTS} mutants failed (seed {SEED}; mutants kept in "
                               f"{keep}):\n" + "\n".join(lines))
    # the campaign exercises both outcomes: a fuzzer whose mutants are all refused (or all
    # accepted) would prove little
    assert counts.get("accepted_verified", 0) >= MUTANTS // 10, counts
    assert counts.get("rejected", 0) >= MUTANTS // 3, counts
    assert set(counts) <= set(OK_KINDS)
