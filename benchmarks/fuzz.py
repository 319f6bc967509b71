"""A larger fuzzing campaign than CI's (``make fuzz``): N structure-aware and byte-level mutants of
the shared and synthetic models through compile and verify, in parallel jobs.

    python benchmarks/fuzz.py --mutants 3000 --seed 7 --jobs 2 --out out/fuzz

Job j runs ``mutants / jobs`` mutants from seed ``seed * 1000 + j``; ``--only mut_a,mut_b`` restricts the
structure-aware edits to those mutators (tests/fuzz_engine.py). Writes ``summary.json`` (counts
per outcome, failures with their mutation and message) into --out, and every failing mutant
(``<kind>_m<index>.tflite`` + ``.json``) into ``--out/failures-<job>/`` for reproduction with
``tinycluster compile``. Exits 1 if any mutant failed. See tests/fuzz_engine.py for the outcomes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from fuzz_engine import OK_KINDS, run_campaign  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mutants", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--time-limit", type=float, default=120.0, help="seconds per compile / verify / TFLM step")
    ap.add_argument("--out", default="out/fuzz")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--only", default=None, help="comma-separated structure mutators (e.g. mut_bias,mut_custom): "
                                                 "the structure-aware edits use only these")
    a = ap.parse_args(argv)
    if a.only:
        import fuzz_engine

        names = {n.strip() for n in a.only.split(",") if n.strip()}
        known = {fn.__name__ for fn, _ in fuzz_engine.STRUCTURE_MUTATORS}
        if not names or names - known:
            ap.error(f"--only: unknown mutators {sorted(names - known)}; known: {', '.join(sorted(known))}")
        fuzz_engine.STRUCTURE_MUTATORS[:] = [(fn, w) for fn, w in fuzz_engine.STRUCTURE_MUTATORS if fn.__name__ in names]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    per = [a.mutants // a.jobs + (1 if j < a.mutants % a.jobs else 0) for j in range(a.jobs)]
    t0 = time.monotonic()

    def job(j):
        log = (lambda s: None) if a.quiet else (lambda s, j=j: print(f"job {j} {s[:300]}", flush=True))
        return run_campaign(per[j], a.seed * 1000 + j, out / f"work-{j}", time_limit=a.time_limit,
                            verify_samples=2, keep_failures=out / f"failures-{j}", log=log)

    with ThreadPoolExecutor(max_workers=a.jobs) as ex:
        results = list(ex.map(job, range(a.jobs)))
    counts = {}
    for r in results:
        for k, v in r["counts"].items():
            counts[k] = counts.get(k, 0) + v
    failures = [dict(f, job=j) for j, r in enumerate(results) for f in r["failures"]]
    seconds = [s["seconds"] for r in results for s in r["results"]]
    summary = {
        "command": " ".join(["python", "benchmarks/fuzz.py"] + (argv if argv is not None else sys.argv[1:])),
        "mutants": a.mutants, "seeds": [a.seed * 1000 + j for j in range(a.jobs)], "jobs": a.jobs,
        "wall_seconds": round(time.monotonic() - t0, 1), "counts": counts, "failures": failures,
        "slowest_mutant_seconds": max(seconds) if seconds else None,
        "by_seed_model": _by_seed(results),
        "worker_restarts": sum(r["worker_starts"]["tinycluster"] + r["worker_starts"]["tflm"] for r in results)
        - 2 * a.jobs,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{a.mutants} mutants in {summary['wall_seconds']} s: {json.dumps(counts, sort_keys=True)}")
    for f in failures:
        print(f"FAIL job {f['job']} [{f['index']}] {f['seed']}: {f['mutation']} -> {f['kind']}: "
              f"{f.get('detail', '')[:300]}")
    return 0 if not failures and set(counts) <= set(OK_KINDS) else 1


def _by_seed(results):
    table = {}
    for r in results:
        for x in r["results"]:
            row = table.setdefault(x["seed"], {})
            row[x["kind"]] = row.get(x["kind"], 0) + 1
    return table


if __name__ == "__main__":
    sys.exit(main())
